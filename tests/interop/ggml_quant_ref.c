// Our own small driver over ggml's public quantization API and its format tables, used by
// tests/interop/iquant_ggml.py (and, once, to make the golden vectors of
// src/quant/golden_tests.rs). Compiled by that test against the llama.cpp that
// scripts/build_llama_cpp.sh builds (libggml-base, the reference quantizers).
//
//   ggml_quant_ref tables DIR
//       write ggml's codebooks as raw little-endian files DIR/NAME.bin (kvalues_iq4nl,
//       kmask_iq2xs, ksigns_iq2xs, iq2xxs_grid, iq2xs_grid, iq2s_grid, iq3xxs_grid, iq3s_grid)
//   ggml_quant_ref quant TYPE N_PER_ROW IN.f32 OUT.bin [QW.f32]
//       ggml_quantize_chunk over the rows of IN.f32 (little-endian f32), with importance
//       weights QW.f32 (n_per_row floats, or n_per_row * n_mat: one slice per matrix of
//       IN's rows / n_mat rows, as llama-quantize hands each expert its own slice)
//   ggml_quant_ref dequant TYPE N_PER_ROW IN.bin OUT.f32
//       the type's to_float over every row
#define GGML_COMMON_DECL_C
#define GGML_COMMON_IMPL_C
#include "ggml-common.h"
#include "ggml.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc(n > 0 ? (size_t)n : 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) { fprintf(stderr, "%s: read failed\n", path); exit(2); }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void spit(const char *path, const void *buf, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) { perror(path); exit(2); }
}

static void table(const char *dir, const char *name, const void *buf, size_t len) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.bin", dir, name);
    spit(path, buf, len);
}

static enum ggml_type type_of(const char *name) {
    for (int t = 0; t < GGML_TYPE_COUNT; ++t) {
        const char *n = ggml_type_name((enum ggml_type)t);
        if (n && strcasecmp(n, name) == 0) return (enum ggml_type)t;
    }
    fprintf(stderr, "unknown type %s\n", name);
    exit(2);
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "tables") == 0) {
        table(argv[2], "kvalues_iq4nl", kvalues_iq4nl, sizeof kvalues_iq4nl);
        table(argv[2], "kmask_iq2xs", kmask_iq2xs, sizeof kmask_iq2xs);
        table(argv[2], "ksigns_iq2xs", ksigns_iq2xs, sizeof ksigns_iq2xs);
        table(argv[2], "iq2xxs_grid", iq2xxs_grid, sizeof iq2xxs_grid);
        table(argv[2], "iq2xs_grid", iq2xs_grid, sizeof iq2xs_grid);
        table(argv[2], "iq2s_grid", iq2s_grid, sizeof iq2s_grid);
        table(argv[2], "iq3xxs_grid", iq3xxs_grid, sizeof iq3xxs_grid);
        table(argv[2], "iq3s_grid", iq3s_grid, sizeof iq3s_grid);
        return 0;
    }
    if (argc >= 6 && (strcmp(argv[1], "quant") == 0 || strcmp(argv[1], "dequant") == 0)) {
        enum ggml_type t = type_of(argv[2]);
        long n_per_row = atol(argv[3]);
        size_t n_in;
        void *in = slurp(argv[4], &n_in);
        size_t row_size = ggml_row_size(t, n_per_row);
        if (strcmp(argv[1], "dequant") == 0) {
            if (n_in % row_size) { fprintf(stderr, "input is not whole rows\n"); return 2; }
            size_t nrows = n_in / row_size;
            float *out = malloc(nrows * n_per_row * sizeof(float) + 1);
            ggml_get_type_traits(t)->to_float(in, out, (int64_t)(nrows * n_per_row));
            spit(argv[5], out, nrows * n_per_row * sizeof(float));
            return 0;
        }
        if (n_in % (n_per_row * sizeof(float))) { fprintf(stderr, "input is not whole rows\n"); return 2; }
        int64_t nrows = (int64_t)(n_in / (n_per_row * sizeof(float)));
        const float *qw = NULL;
        int64_t n_mat = 1;
        if (argc >= 7) {
            size_t n_qw;
            qw = slurp(argv[6], &n_qw);
            n_mat = (int64_t)(n_qw / (n_per_row * sizeof(float)));
            if (n_mat < 1 || n_qw % (n_per_row * sizeof(float)) || nrows % n_mat) {
                fprintf(stderr, "weights must be n_per_row floats per matrix\n");
                return 2;
            }
        }
        char *out = malloc((size_t)nrows * row_size + 1);
        int64_t rows_per_mat = nrows / n_mat;
        for (int64_t m = 0; m < n_mat; ++m) {
            const float *w = qw ? qw + m * n_per_row : NULL;
            ggml_quantize_chunk(t, (const float *)in + m * rows_per_mat * n_per_row,
                                out + m * rows_per_mat * row_size, 0, rows_per_mat, n_per_row, w);
        }
        spit(argv[5], out, (size_t)nrows * row_size);
        return 0;
    }
    fprintf(stderr, "usage: %s tables DIR | quant TYPE N_PER_ROW IN.f32 OUT.bin [QW.f32] | dequant TYPE N_PER_ROW IN.bin OUT.f32\n", argv[0]);
    return 2;
}
