/*
 * Load a .kiln artifact from C, print its inputs and outputs, run it on
 * known inputs and (optionally) check the outputs against expected bytes.
 *
 *   kiln compile examples/models/lenet5.kir --dim N=1 -o lenet5.kiln
 *   cargo build --release -p kiln-runtime
 *   cc -O2 -Iruntime/include examples/c/main.c target/release/libkiln_runtime.a \
 *      -lpthread -ldl -lm -o kiln_c_example
 *   ./kiln_c_example lenet5.kiln [EXPECTED.bin]
 *
 * (or `make -C examples/c run MODEL=../../lenet5.kiln`).
 *
 * Input k, element i is ((i * 37 + k * 11) % 101 - 50) / 64: exact in f32,
 * so any program can build the same inputs. EXPECTED.bin, if given, holds
 * every output's little-endian bytes, one after another; the outputs must
 * equal it bit for bit. Exit status: 0 ok, 1 a kiln error, 2 a mismatch,
 * 3 usage or I/O.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln.h"

#define CHECK(call)                                                             \
    do {                                                                        \
        kiln_status st_ = (call);                                               \
        if (st_ != KILN_OK) {                                                   \
            fprintf(stderr, "%s failed: %s: %s\n", #call, kiln_status_name(st_), \
                    kiln_last_error());                                         \
            return 1;                                                           \
        }                                                                       \
    } while (0)

static const char* dtype_name(kiln_dtype d) {
    switch (d) {
    case KILN_DTYPE_F32: return "f32";
    case KILN_DTYPE_F64: return "f64";
    case KILN_DTYPE_F16: return "f16";
    case KILN_DTYPE_BF16: return "bf16";
    case KILN_DTYPE_I8: return "i8";
    case KILN_DTYPE_U8: return "u8";
    case KILN_DTYPE_I16: return "i16";
    case KILN_DTYPE_U16: return "u16";
    case KILN_DTYPE_I32: return "i32";
    case KILN_DTYPE_U32: return "u32";
    case KILN_DTYPE_I64: return "i64";
    case KILN_DTYPE_U64: return "u64";
    case KILN_DTYPE_BOOL: return "bool";
    default: return "other";
    }
}

static void print_shape(const size_t* shape, size_t rank) {
    printf("[");
    for (size_t d = 0; d < rank; d++) printf(d ? ",%zu" : "%zu", shape[d]);
    printf("]");
}

/* Describe one input or output and fill a kiln_tensor for it (buffer
 * allocated, zeroed). */
static int describe(const kiln_session* s, int output, size_t k, kiln_tensor* t) {
    const char* name;
    kiln_dtype dtype;
    size_t rank, bytes;
    const size_t* shape;
    if (output) {
        CHECK(kiln_session_output_name(s, k, &name));
        CHECK(kiln_session_output_dtype(s, k, &dtype));
        CHECK(kiln_session_output_rank(s, k, &rank));
        CHECK(kiln_session_output_shape(s, k, &shape));
        CHECK(kiln_session_output_byte_len(s, k, &bytes));
    } else {
        CHECK(kiln_session_input_name(s, k, &name));
        CHECK(kiln_session_input_dtype(s, k, &dtype));
        CHECK(kiln_session_input_rank(s, k, &rank));
        CHECK(kiln_session_input_shape(s, k, &shape));
        CHECK(kiln_session_input_byte_len(s, k, &bytes));
    }
    printf("%s %zu: %s: %s", output ? "output" : "input", k, name, dtype_name(dtype));
    print_shape(shape, rank);
    printf(" (%zu bytes)\n", bytes);
    t->dtype = (int32_t)dtype;
    t->rank = rank;
    t->shape = shape;
    t->byte_len = bytes;
    t->data = calloc(bytes ? bytes : 1, 1);
    if (!t->data) {
        fprintf(stderr, "out of memory\n");
        return 3;
    }
    return 0;
}

int main(int argc, char** argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s MODEL.kiln [EXPECTED.bin]\n", argv[0]);
        return 3;
    }
    printf("kiln %s\n", kiln_version());
    kiln_session* s = NULL;
    CHECK(kiln_session_load(argv[1], 1, &s));
    size_t n_in, n_out;
    CHECK(kiln_session_input_count(s, &n_in));
    CHECK(kiln_session_output_count(s, &n_out));
    kiln_tensor* ins = calloc(n_in ? n_in : 1, sizeof *ins);
    kiln_tensor* outs = calloc(n_out ? n_out : 1, sizeof *outs);
    if (!ins || !outs) return 3;
    for (size_t k = 0; k < n_in; k++) {
        int rc = describe(s, 0, k, &ins[k]);
        if (rc) return rc;
        if (ins[k].dtype != KILN_DTYPE_F32) {
            fprintf(stderr, "this example feeds f32 inputs only\n");
            return 3;
        }
        float* x = ins[k].data;
        for (size_t i = 0; i < ins[k].byte_len / 4; i++)
            x[i] = (float)((long)((i * 37 + k * 11) % 101) - 50) / 64.0f;
    }
    for (size_t k = 0; k < n_out; k++) {
        int rc = describe(s, 1, k, &outs[k]);
        if (rc) return rc;
    }
    CHECK(kiln_session_run(s, ins, n_in, outs, n_out));
    for (size_t k = 0; k < n_out; k++) {
        if (outs[k].dtype != KILN_DTYPE_F32) continue;
        const float* y = outs[k].data;
        size_t n = outs[k].byte_len / 4;
        printf("output %zu:", k);
        for (size_t i = 0; i < n && i < 6; i++) printf(" %.6g", y[i]);
        printf(n > 6 ? " ...\n" : "\n");
    }
    int status = 0;
    if (argc == 3) {
        FILE* f = fopen(argv[2], "rb");
        if (!f) {
            fprintf(stderr, "cannot open %s\n", argv[2]);
            return 3;
        }
        size_t total = 0;
        for (size_t k = 0; k < n_out; k++) {
            unsigned char* want = malloc(outs[k].byte_len ? outs[k].byte_len : 1);
            if (!want) return 3;
            if (fread(want, 1, outs[k].byte_len, f) != outs[k].byte_len) {
                fprintf(stderr, "%s is too short for output %zu\n", argv[2], k);
                return 3;
            }
            if (memcmp(want, outs[k].data, outs[k].byte_len) != 0) {
                const unsigned char* got = outs[k].data;
                size_t i = 0;
                while (want[i] == got[i]) i++;
                fprintf(stderr, "MISMATCH in output %zu at byte %zu\n", k, i);
                status = 2;
            }
            total += outs[k].byte_len;
            free(want);
        }
        if (fgetc(f) != EOF) {
            fprintf(stderr, "%s is longer than the outputs\n", argv[2]);
            status = 2;
        }
        fclose(f);
        if (status == 0) printf("outputs match %s (%zu bytes)\n", argv[2], total);
    }
    for (size_t k = 0; k < n_in; k++) free(ins[k].data);
    for (size_t k = 0; k < n_out; k++) free(outs[k].data);
    free(ins);
    free(outs);
    kiln_session_free(s);
    return status;
}
