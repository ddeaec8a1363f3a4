/*
 * The C API's error paths (run by tests/c_api.rs):
 *   errors VALID.kiln CORRUPT.kiln
 * Each case prints "case <name>: <status> <message>" and must return the
 * expected status with a non-empty message; the process must not crash.
 * Exit status: 0 when every case behaved, 1 otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln.h"

static int failures = 0;

static void expect(const char* name, kiln_status got, kiln_status want) {
    const char* msg = kiln_last_error();
    printf("case %s: %s %s\n", name, kiln_status_name(got), got == KILN_OK ? "" : msg);
    if (got != want) {
        printf("  FAIL: expected %s\n", kiln_status_name(want));
        failures++;
    } else if (want != KILN_OK && (msg == NULL || msg[0] == '\0')) {
        printf("  FAIL: no message\n");
        failures++;
    }
}

static unsigned char* read_all(const char* path, size_t* len) {
    FILE* f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char* b = malloc(n > 0 ? (size_t)n : 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

int main(int argc, char** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s VALID.kiln CORRUPT.kiln\n", argv[0]);
        return 2;
    }
    kiln_session* s = NULL;
    expect("missing_file", kiln_session_load("/nonexistent/dir/model.kiln", 1, &s), KILN_ERR_IO);
    expect("corrupt_file", kiln_session_load(argv[2], 1, &s), KILN_ERR_FORMAT);
    expect("null_path", kiln_session_load(NULL, 1, &s), KILN_ERR_INVALID_ARGUMENT);
    expect("null_out", kiln_session_load(argv[1], 1, NULL), KILN_ERR_INVALID_ARGUMENT);
    expect("null_bytes", kiln_session_load_bytes(NULL, 16, 1, &s), KILN_ERR_INVALID_ARGUMENT);
    expect("empty_bytes", kiln_session_load_bytes(NULL, 0, 1, &s), KILN_ERR_FORMAT);
    expect("not_an_artifact", kiln_session_load_bytes((const uint8_t*)"hello, kiln", 11, 1, &s),
           KILN_ERR_FORMAT);

    size_t len = 0;
    unsigned char* bytes = read_all(argv[1], &len);
    if (!bytes) {
        fprintf(stderr, "cannot read %s\n", argv[1]);
        return 2;
    }
    /* Every truncation point in steps: a clean format error. */
    int truncs_ok = 1;
    for (size_t cut = 0; cut < len; cut += 1 + len / 97) {
        kiln_session* t = NULL;
        kiln_status st = kiln_session_load_bytes(bytes, cut, 1, &t);
        if (st != KILN_ERR_FORMAT || t != NULL) truncs_ok = 0;
        kiln_session_free(t);
    }
    expect("truncations", truncs_ok ? KILN_ERR_FORMAT : KILN_OK, KILN_ERR_FORMAT);

    expect("load_bytes", kiln_session_load_bytes(bytes, len, 1, &s), KILN_OK);
    free(bytes);
    if (!s) return 1;

    /* Queries with bad arguments. */
    size_t n_in = 0, n_out = 0, rank = 0;
    const char* name = NULL;
    expect("count_null_session", kiln_session_input_count(NULL, &n_in), KILN_ERR_INVALID_ARGUMENT);
    expect("count_null_out", kiln_session_output_count(s, NULL), KILN_ERR_INVALID_ARGUMENT);
    expect("input_count", kiln_session_input_count(s, &n_in), KILN_OK);
    expect("output_count", kiln_session_output_count(s, &n_out), KILN_OK);
    expect("name_out_of_range", kiln_session_input_name(s, n_in, &name), KILN_ERR_INVALID_ARGUMENT);
    expect("rank_out_of_range", kiln_session_output_rank(s, n_out + 5, &rank),
           KILN_ERR_INVALID_ARGUMENT);
    if (n_in != 1 || n_out < 1) {
        fprintf(stderr, "this test wants a model with one input\n");
        return 2;
    }

    /* A correct run first. */
    kiln_dtype dt;
    const size_t* shape;
    size_t in_bytes, out_bytes;
    kiln_session_input_rank(s, 0, &rank);
    kiln_session_input_shape(s, 0, &shape);
    kiln_session_input_dtype(s, 0, &dt);
    kiln_session_input_byte_len(s, 0, &in_bytes);
    float* x = calloc(in_bytes / 4 + 8, 4);
    kiln_tensor in = {(int32_t)dt, rank, shape, x, in_bytes};
    kiln_tensor* outs = calloc(n_out, sizeof *outs);
    for (size_t k = 0; k < n_out; k++) {
        kiln_session_output_dtype(s, k, &dt);
        kiln_session_output_rank(s, k, &outs[k].rank);
        kiln_session_output_shape(s, k, &outs[k].shape);
        kiln_session_output_byte_len(s, k, &out_bytes);
        outs[k].dtype = (int32_t)dt;
        outs[k].byte_len = out_bytes;
        outs[k].data = calloc(out_bytes + 1, 1);
    }
    expect("run", kiln_session_run(s, &in, 1, outs, n_out), KILN_OK);

    /* Wrong counts. */
    expect("no_inputs", kiln_session_run(s, &in, 0, outs, n_out), KILN_ERR_INVALID_ARGUMENT);
    expect("too_many_outputs", kiln_session_run(s, &in, 1, outs, n_out + 1),
           KILN_ERR_INVALID_ARGUMENT);
    expect("null_inputs", kiln_session_run(s, NULL, 1, outs, n_out), KILN_ERR_INVALID_ARGUMENT);
    expect("null_session_run", kiln_session_run(NULL, &in, 1, outs, n_out),
           KILN_ERR_INVALID_ARGUMENT);

    /* Wrong shape: the last dimension off by one. */
    size_t bad_shape[8];
    for (size_t d = 0; d < rank && d < 8; d++) bad_shape[d] = shape[d];
    bad_shape[rank - 1] += 1;
    kiln_tensor bad = in;
    bad.shape = bad_shape;
    expect("wrong_shape", kiln_session_run(s, &bad, 1, outs, n_out), KILN_ERR_INVALID_ARGUMENT);
    bad = in;
    bad.rank = rank + 1;
    expect("wrong_rank", kiln_session_run(s, &bad, 1, outs, n_out), KILN_ERR_INVALID_ARGUMENT);
    bad = in;
    bad.dtype = KILN_DTYPE_F64;
    expect("wrong_dtype", kiln_session_run(s, &bad, 1, outs, n_out), KILN_ERR_INVALID_ARGUMENT);
    bad = in;
    bad.byte_len -= 4;
    expect("wrong_byte_len", kiln_session_run(s, &bad, 1, outs, n_out), KILN_ERR_INVALID_ARGUMENT);
    bad = in;
    bad.data = NULL;
    expect("null_data", kiln_session_run(s, &bad, 1, outs, n_out), KILN_ERR_INVALID_ARGUMENT);
    bad = in;
    bad.shape = NULL;
    expect("null_shape", kiln_session_run(s, &bad, 1, outs, n_out), KILN_ERR_INVALID_ARGUMENT);

    /* An output buffer overlapping the input. */
    kiln_tensor o0 = outs[0];
    outs[0].data = x;
    expect("output_overlaps_input", kiln_session_run(s, &in, 1, outs, n_out),
           KILN_ERR_INVALID_ARGUMENT);
    outs[0] = o0;
    /* A misaligned (but otherwise valid) output buffer is fine. */
    outs[0].data = (char*)o0.data + 1;
    expect("misaligned_output", kiln_session_run(s, &in, 1, outs, n_out), KILN_OK);
    outs[0] = o0;

    kiln_session_free(s);
    kiln_session_free(NULL);
    for (size_t k = 0; k < n_out; k++) free(outs[k].data);
    free(outs);
    free(x);
    printf("%d failures\n", failures);
    return failures ? 1 : 0;
}
