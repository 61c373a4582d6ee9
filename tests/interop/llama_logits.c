/* grokit-llama-logits: run one sequence of token ids through llama.cpp and write the logits
 * of every position, so the interop test can compare llama.cpp's own forward pass of a GGUF
 * that grokit wrote with the reference logits. Built by scripts/build_llama_cpp.sh against the
 * libllama it builds; only llama.h's public API is used.
 *
 * usage: grokit-llama-logits MODEL.gguf OUT.f32 N_THREADS TOKEN [TOKEN ...]
 * OUT.f32 receives n_tokens x n_vocab little-endian f32 (row-major); stdout gets one line
 * `n_tokens=N n_vocab=V desc=...`. llama.cpp's own load log goes to stderr. */
#include <stdio.h>
#include <stdlib.h>
#include "llama.h"

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s MODEL.gguf OUT.f32 N_THREADS TOKEN [TOKEN ...]\n", argv[0]);
        return 2;
    }
    const char *model_path = argv[1];
    const char *out_path = argv[2];
    int n_threads = atoi(argv[3]);
    int n = argc - 4;
    if (n_threads <= 0) n_threads = 1;

    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    struct llama_model *model = llama_model_load_from_file(model_path, mp);
    if (!model) { fprintf(stderr, "error: could not load %s\n", model_path); return 1; }
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    int n_vocab = llama_vocab_n_tokens(vocab);

    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)(n < 64 ? 64 : n);
    cp.n_batch = cp.n_ctx;
    cp.n_ubatch = cp.n_ctx;
    cp.n_threads = n_threads;
    cp.n_threads_batch = n_threads;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) { fprintf(stderr, "error: could not create a context\n"); return 1; }

    struct llama_batch batch = llama_batch_init(n, 0, 1);
    for (int i = 0; i < n; i++) {
        char *end = NULL;
        long t = strtol(argv[4 + i], &end, 10);
        if (!end || *end || t < 0 || t >= n_vocab) {
            fprintf(stderr, "error: bad token id '%s'\n", argv[4 + i]);
            return 2;
        }
        batch.token[i] = (llama_token)t;
        batch.pos[i] = i;
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i] = 1;
    }
    batch.n_tokens = n;
    int rc = llama_decode(ctx, batch);
    if (rc != 0) { fprintf(stderr, "error: llama_decode returned %d\n", rc); return 1; }

    FILE *f = fopen(out_path, "wb");
    if (!f) { fprintf(stderr, "error: cannot write %s\n", out_path); return 1; }
    for (int i = 0; i < n; i++) {
        const float *row = llama_get_logits_ith(ctx, i);
        if (!row || fwrite(row, sizeof(float), (size_t)n_vocab, f) != (size_t)n_vocab) {
            fprintf(stderr, "error: no logits for position %d\n", i);
            fclose(f);
            return 1;
        }
    }
    if (fclose(f) != 0) { fprintf(stderr, "error: write failed\n"); return 1; }

    char desc[256];
    llama_model_desc(model, desc, sizeof desc);
    printf("n_tokens=%d n_vocab=%d n_params=%llu desc=%s\n", n, n_vocab,
           (unsigned long long)llama_model_n_params(model), desc);

    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
