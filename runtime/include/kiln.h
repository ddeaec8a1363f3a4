/*
 * kiln.h: the C API of kiln-runtime (a compiled .kiln artifact, loaded and
 * run from C).
 *
 * Link with the static library (target/<profile>/libkiln_runtime.a, plus
 * -lpthread -ldl -lm) or the shared one (libkiln_runtime.so / .dylib).
 *
 * Conventions:
 *  - Every function returning kiln_status returns KILN_OK (0) on success;
 *    on failure kiln_last_error() gives a message for this thread.
 *  - Null pointers, out-of-range indices, wrong counts, ranks, shapes,
 *    dtypes or byte lengths are errors (KILN_ERR_INVALID_ARGUMENT), never
 *    crashes. What C cannot check -- a pointer to less memory than it
 *    claims, a freed session -- is the caller's responsibility.
 *  - No Rust panic crosses this boundary: one would be KILN_ERR_PANIC.
 *  - A session may be run from several threads at once.
 *  - Tensor data is little-endian, row-major; narrow types (float8,
 *    int4 ...) take one byte per element.
 *
 * Kept in sync with runtime/src/capi.rs by runtime/tests/capi_header.rs.
 */
#ifndef KILN_H
#define KILN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A function's result. */
typedef enum kiln_status {
    KILN_OK = 0,
    /* A null pointer, a bad index, count, rank, shape, dtype or length. */
    KILN_ERR_INVALID_ARGUMENT = 1,
    /* The artifact file could not be read. */
    KILN_ERR_IO = 2,
    /* The bytes are not a valid artifact (magic, checksum, truncation ...). */
    KILN_ERR_FORMAT = 3,
    /* A valid artifact this build or CPU cannot run (version, CPU features). */
    KILN_ERR_UNSUPPORTED = 4,
    /* A step failed while running. */
    KILN_ERR_RUN = 5,
    /* A bug in kiln: a Rust panic, caught at the boundary. */
    KILN_ERR_PANIC = 6
} kiln_status;

/* Element types: ONNX's TensorProto.DataType codes. KILN_DTYPE_OTHER is a
 * type without a C code (quantized int8, float8, int4 ...; one byte per
 * element): pass it back as given. */
typedef enum kiln_dtype {
    KILN_DTYPE_OTHER = 0,
    KILN_DTYPE_F32 = 1,
    KILN_DTYPE_U8 = 2,
    KILN_DTYPE_I8 = 3,
    KILN_DTYPE_U16 = 4,
    KILN_DTYPE_I16 = 5,
    KILN_DTYPE_I32 = 6,
    KILN_DTYPE_I64 = 7,
    KILN_DTYPE_BOOL = 9,
    KILN_DTYPE_F16 = 10,
    KILN_DTYPE_F64 = 11,
    KILN_DTYPE_U32 = 12,
    KILN_DTYPE_U64 = 13,
    KILN_DTYPE_BF16 = 16
} kiln_dtype;

/* A loaded model. */
typedef struct kiln_session kiln_session;

/* A tensor the caller owns. `dtype` is a kiln_dtype value; `shape` points
 * to `rank` dimensions; `data` to `byte_len` bytes. Inputs are only read;
 * output buffers must not overlap each other or an input. */
typedef struct kiln_tensor {
    int32_t dtype;
    size_t rank;
    const size_t* shape;
    void* data;
    size_t byte_len;
} kiln_tensor;

/* The library's version, e.g. "0.1.0" (a static string). */
const char* kiln_version(void);

/* The message of the last failed call on this thread ("" if none); valid
 * until the next failing kiln call on this thread. */
const char* kiln_last_error(void);

/* A status code's name, e.g. "KILN_ERR_IO" (a static string). */
const char* kiln_status_name(int32_t status);

/* Load an artifact file; `threads` worker threads (0: all cores). On
 * success *out is a session to free with kiln_session_free. */
kiln_status kiln_session_load(const char* path, size_t threads, kiln_session** out);

/* Load an artifact from `len` bytes at `data` (they may be freed after). */
kiln_status kiln_session_load_bytes(const uint8_t* data, size_t len, size_t threads,
                                    kiln_session** out);

/* Free a session (NULL is ignored). It must not be running. */
void kiln_session_free(kiln_session* session);

/* Numbers of inputs and outputs. */
kiln_status kiln_session_input_count(const kiln_session* session, size_t* out);
kiln_status kiln_session_output_count(const kiln_session* session, size_t* out);

/* Input/output `index`'s name (valid while the session lives). */
kiln_status kiln_session_input_name(const kiln_session* session, size_t index,
                                    const char** out);
kiln_status kiln_session_output_name(const kiln_session* session, size_t index,
                                     const char** out);

/* Input/output `index`'s element type. */
kiln_status kiln_session_input_dtype(const kiln_session* session, size_t index,
                                     kiln_dtype* out);
kiln_status kiln_session_output_dtype(const kiln_session* session, size_t index,
                                      kiln_dtype* out);

/* Input/output `index`'s rank (number of dimensions). */
kiln_status kiln_session_input_rank(const kiln_session* session, size_t index, size_t* out);
kiln_status kiln_session_output_rank(const kiln_session* session, size_t index, size_t* out);

/* Input/output `index`'s dimensions: *out points to `rank` values, valid
 * while the session lives. */
kiln_status kiln_session_input_shape(const kiln_session* session, size_t index,
                                     const size_t** out);
kiln_status kiln_session_output_shape(const kiln_session* session, size_t index,
                                      const size_t** out);

/* Input/output `index`'s size in bytes. */
kiln_status kiln_session_input_byte_len(const kiln_session* session, size_t index,
                                        size_t* out);
kiln_status kiln_session_output_byte_len(const kiln_session* session, size_t index,
                                         size_t* out);

/* Run: `n_in` inputs and `n_out` outputs, in the model's order, each
 * matching its declaration exactly. Outputs are written into the caller's
 * buffers (f32 results in place, without a copy). On failure the output
 * buffers may hold partial results. */
kiln_status kiln_session_run(const kiln_session* session, const kiln_tensor* inputs,
                             size_t n_in, kiln_tensor* outputs, size_t n_out);

#ifdef __cplusplus
}
#endif

#endif /* KILN_H */
