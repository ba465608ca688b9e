/*
 * fuzz_wire: the parameter server's checked decoders (coordinator/wire.c).
 * The first byte picks the message kind, the rest is the packed message. An
 * accepted message is checked against the decoder's promises (version, dtype,
 * payload length = count x dtype size, keys inside the adapter), its payload
 * decoded to floats (an out-of-bounds read shows under ASan) and packed again.
 * Seeds: scripts/run_fuzz.sh asks the harness for valid messages of every kind
 * (FUZZ_WRITE_SEEDS=dir).
 */
#include "fuzz_util.h"
#include "wire.h"

#define NP 1000 /* the adapter's size the keys are checked against */

static void repack(const ProtobufCMessage *m) {
    size_t len;
    uint8_t *b = wire_pack(m, &len);
    if (!b) abort();
    free(b);
}

static void payload(const uint8_t *p, size_t nbytes, uint64_t count, int dtype) {
    if (count > NP || nbytes != count * wire_dtype_size(dtype)) abort();
    float *out = malloc((count ? count : 1) * sizeof *out);
    if (!out) abort();
    wire_decode_floats(out, p, count, dtype, 0);
    free(out);
}

static void write_seed(const char *dir, int kind, const ProtobufCMessage *m) {
    size_t len;
    uint8_t *b = wire_pack(m, &len);
    char path[512];
    snprintf(path, sizeof path, "%s/seed-%d", dir, kind);
    FILE *f = fopen(path, "wb");
    if (!b || !f) abort();
    fputc(kind, f);
    fwrite(b, 1, len, f);
    fclose(f);
    free(b);
}

static void write_seeds(const char *dir) {
    float v[8] = {1, -2, 3.5f, 0, 1e-3f, -7, 8, 0.25f};
    uint8_t raw[32];
    wire_encode_floats(raw, v, 8, LORA__DTYPE__F32);
    Lora__Push p = LORA__PUSH__INIT;
    p.wire_version = WIRE_VERSION, p.step = 3, p.worker = 1, p.n_tokens = 64, p.loss_sum = 2.5, p.offset = 8;
    p.count = 8, p.payload.data = raw, p.payload.len = 32, p.checksum = wire_checksum(raw, 32);
    write_seed(dir, 0, &p.base);
    size_t len;
    uint8_t *u = wire_pack_update(v, 16, 8, LORA__DTYPE__BF16, 4, 3, 0, &len);
    char path[512];
    snprintf(path, sizeof path, "%s/seed-1", dir);
    FILE *f = fopen(path, "wb");
    if (!u || !f) abort();
    fputc(1, f);
    fwrite(u, 1, len, f);
    fclose(f);
    free(u);
    Lora__Pull pl = LORA__PULL__INIT;
    pl.wire_version = WIRE_VERSION, pl.worker = 2, pl.clock = 5;
    write_seed(dir, 2, &pl.base);
    Lora__Hello h = LORA__HELLO__INIT;
    h.wire_version = WIRE_VERSION, h.rank = 1, h.n_params = NP, h.host = "node1", h.model_path = "/m";
    h.config_text = "[lora]\nr = 8\n";
    write_seed(dir, 3, &h.base);
    Lora__ShardStat s = LORA__SHARD_STAT__INIT;
    s.wire_version = WIRE_VERSION, s.shard = 1, s.step = 9, s.sq_sum = 0.5;
    write_seed(dir, 4, &s.base);
    Lora__ShardState ss = LORA__SHARD_STATE__INIT;
    ss.wire_version = WIRE_VERSION, ss.offset = 0, ss.count = 8;
    ss.values.data = ss.exp_avg.data = ss.exp_avg_sq.data = raw;
    ss.values.len = ss.exp_avg.len = ss.exp_avg_sq.len = 32;
    ss.opt_steps = 3, ss.version = 3;
    ss.checksum = wire_state_checksum(&ss);
    write_seed(dir, 5, &ss.base);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fuzz_seeds_if_asked(write_seeds);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int kind = data[0] % 6;
    const uint8_t *b = data + 1;
    size_t n = size - 1;
    struct lerr e;
    e.msg[0] = 0;
    switch (kind) {
    case 0: {
        Lora__Push *m = wire_unpack_push(b, n, 1, NP, &e);
        fuzz_need_msg(!m, &e, "wire_unpack_push");
        if (!m) break;
        if (m->wire_version != WIRE_VERSION || m->offset > NP || m->count > NP - m->offset) abort();
        payload(m->payload.data, m->payload.len, m->count, m->dtype);
        repack(&m->base);
        lora__push__free_unpacked(m, NULL);
        break;
    }
    case 1: {
        Lora__Update *m = wire_unpack_update(b, n, 1, NP, &e);
        fuzz_need_msg(!m, &e, "wire_unpack_update");
        if (!m) break;
        if (m->wire_version != WIRE_VERSION || m->offset > NP || m->count > NP - m->offset) abort();
        payload(m->values.data, m->values.len, m->count, m->dtype);
        repack(&m->base);
        lora__update__free_unpacked(m, NULL);
        break;
    }
    case 2: {
        Lora__Pull *m = wire_unpack_pull(b, n, 1, &e);
        fuzz_need_msg(!m, &e, "wire_unpack_pull");
        if (!m) break;
        if (m->wire_version != WIRE_VERSION) abort();
        repack(&m->base);
        lora__pull__free_unpacked(m, NULL);
        break;
    }
    case 3: {
        Lora__Hello *m = wire_unpack_hello(b, n, 1, &e);
        fuzz_need_msg(!m, &e, "wire_unpack_hello");
        if (!m) break;
        if (m->wire_version != WIRE_VERSION) abort();
        if (m->host) (void)strlen(m->host);
        if (m->model_path) (void)strlen(m->model_path);
        if (m->config_text) (void)strlen(m->config_text);
        repack(&m->base);
        lora__hello__free_unpacked(m, NULL);
        break;
    }
    case 4: {
        Lora__ShardStat *m = wire_unpack_shard_stat(b, n, 1, &e);
        fuzz_need_msg(!m, &e, "wire_unpack_shard_stat");
        if (!m) break;
        if (m->wire_version != WIRE_VERSION) abort();
        repack(&m->base);
        lora__shard_stat__free_unpacked(m, NULL);
        break;
    }
    default: {
        Lora__ShardState *m = wire_unpack_shard_state(b, n, 1, NP, &e);
        fuzz_need_msg(!m, &e, "wire_unpack_shard_state");
        if (!m) break;
        if (m->wire_version != WIRE_VERSION || m->offset > NP || m->count > NP - m->offset) abort();
        payload(m->values.data, m->values.len, m->count, LORA__DTYPE__F32);
        payload(m->exp_avg.data, m->exp_avg.len, m->count, LORA__DTYPE__F32);
        payload(m->exp_avg_sq.data, m->exp_avg_sq.len, m->count, LORA__DTYPE__F32);
        (void)wire_state_checksum(m);
        repack(&m->base);
        lora__shard_state__free_unpacked(m, NULL);
        break;
    }
    }
    return 0;
}
