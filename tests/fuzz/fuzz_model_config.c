/*
 * fuzz_model_config: config.json of every family (model_init_shape,
 * worker/model.c and the families' describe). The input is the JSON text;
 * an accepted config must describe a consistent table (tensors with sane
 * shapes, sites naming tensors of the table). Seeds: the fixtures'
 * config.json files.
 */
#include "fuzz_util.h"
#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > (1 << 16)) return 0;
    char *text = fuzz_text(data, size);
    struct lerr e;
    e.msg[0] = 0;
    model m;
    int rc = model_init_shape(&m, text, &e);
    free(text);
    fuzz_need_msg(rc != 0, &e, "model_init_shape");
    if (rc != 0) return 0;
    if (m.n_tensor <= 0 || m.vocab <= 0 || m.n_params <= 0) abort();
    for (int i = 0; i < m.n_tensor; i++)
        if (m.tensor[i].shape[0] <= 0 || m.tensor[i].shape[1] < 0 || !m.tensor[i].name[0]) abort();
    for (int i = 0; i < m.n_site; i++)
        if (m.site[i].in <= 0 || m.site[i].out <= 0 || !m.site[i].name[0]) abort();
    char *cj = m.fam && m.fam->config_json ? m.fam->config_json(&m) : NULL;
    if (cj) { /* what it writes back must load again */
        model m2;
        if (model_init_shape(&m2, cj, &e) != 0) {
            fprintf(stderr, "fuzz: its own config.json does not load again: %s\n", e.msg);
            abort();
        }
        if (m2.n_params != m.n_params || m2.n_tensor != m.n_tensor) abort();
        model_free(&m2);
        free(cj);
    }
    model_free(&m);
    return 0;
}
