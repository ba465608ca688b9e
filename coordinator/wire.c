/* Wire messages: packing, payload conversion and checked decoding (see include/wire.h). */
#include "wire.h"

#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
#include "util.h"

size_t wire_dtype_size(int dtype) {
    switch (dtype) {
    case LORA__DTYPE__F32: return 4;
    case LORA__DTYPE__BF16:
    case LORA__DTYPE__F16: return 2;
    default: return 0;
    }
}

const char *wire_dtype_name(int dtype) {
    switch (dtype) {
    case LORA__DTYPE__F32: return "fp32";
    case LORA__DTYPE__BF16: return "bf16";
    case LORA__DTYPE__F16: return "fp16";
    default: return "unknown";
    }
}

int wire_dtype_parse(const char *s) {
    if (!strcmp(s, "fp32")) return LORA__DTYPE__F32;
    if (!strcmp(s, "bf16")) return LORA__DTYPE__BF16;
    if (!strcmp(s, "fp16")) return LORA__DTYPE__F16;
    return -1;
}

void wire_encode_floats(void *dst, const float *src, size_t n, int dtype) {
    if (dtype == LORA__DTYPE__F32) {
        memcpy(dst, src, n * 4);
        return;
    }
    uint16_t *d = dst;
    if (dtype == LORA__DTYPE__BF16)
        for (size_t i = 0; i < n; i++) d[i] = st_f32_to_bf16(src[i]);
    else
        for (size_t i = 0; i < n; i++) d[i] = st_f32_to_f16(src[i]);
}

void wire_decode_floats(float *dst, const void *src, size_t n, int dtype, int accumulate) {
    if (dtype == LORA__DTYPE__F32) {
        const unsigned char *s = src;
        if (!accumulate) {
            memcpy(dst, src, n * 4);
            return;
        }
        for (size_t i = 0; i < n; i++) {
            float v;
            memcpy(&v, s + 4 * i, 4);
            dst[i] += v;
        }
        return;
    }
    const unsigned char *s = src;
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, s + 2 * i, 2);
        float v = dtype == LORA__DTYPE__BF16 ? st_bf16_to_f32(h) : st_f16_to_f32(h);
        dst[i] = accumulate ? dst[i] + v : v;
    }
}

uint8_t *wire_pack(const ProtobufCMessage *m, size_t *len) {
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = xmalloc(n ? n : 1);
    *len = protobuf_c_message_pack(m, buf);
    return buf;
}

uint8_t *wire_pack_update(const float *values, uint64_t offset, uint64_t count, int dtype, uint64_t version,
                          uint64_t step, int status, size_t *len) {
    size_t ds = wire_dtype_size(dtype);
    uint8_t *conv = NULL;
    Lora__Update u = LORA__UPDATE__INIT;
    u.wire_version = WIRE_VERSION;
    u.adapter_version = version;
    u.step = step;
    u.dtype = dtype;
    u.offset = offset;
    u.count = count;
    u.status = status;
    if (dtype == LORA__DTYPE__F32) {
        u.values.data = (uint8_t *)values; /* packed as they are: no copy */
    } else {
        conv = xmalloc(count * ds + 1);
        wire_encode_floats(conv, values, count, dtype);
        u.values.data = conv;
    }
    u.values.len = count * ds;
    u.checksum = wire_checksum(u.values.data, u.values.len);
    uint8_t *buf = wire_pack(&u.base, len);
    free(conv);
    return buf;
}

uint64_t wire_checksum(const void *p, size_t n) { return hash64(p, n, 0x6c6f7261u); }

static int check_version(uint32_t v, const char *kind, int from, struct lerr *e) {
    if (v != WIRE_VERSION)
        return lerr_set(e, "rank %d sent a %s of wire version %u; this build speaks wire version %d", from, kind, v,
                        WIRE_VERSION);
    return 0;
}

static int check_payload(const ProtobufCBinaryData *b, uint64_t checksum, int dtype, uint64_t offset, uint64_t count,
                         uint64_t n_params, const char *kind, int from, struct lerr *e) {
    size_t ds = wire_dtype_size(dtype);
    if (!ds) return lerr_set(e, "rank %d sent a %s with unknown dtype %d", from, kind, dtype);
    if (offset > n_params || count > n_params - offset)
        return lerr_set(e, "rank %d sent a %s for keys [%llu, %llu) outside the adapter's %llu values", from, kind,
                        (unsigned long long)offset, (unsigned long long)(offset + count),
                        (unsigned long long)n_params);
    if (b->len != count * ds)
        return lerr_set(e, "rank %d sent a %s whose payload has %zu bytes, but %llu %s values need %llu", from, kind,
                        b->len, (unsigned long long)count, wire_dtype_name(dtype),
                        (unsigned long long)(count * ds));
    if (wire_checksum(b->data, b->len) != checksum)
        return lerr_set(e, "rank %d sent a %s whose payload checksum does not match (corrupted in transit?)", from,
                        kind);
    return 0;
}

#define UNPACK_OR_FAIL(T, fn, kind)                                                                                   \
    T *m = fn(NULL, len, buf);                                                                                         \
    if (!m) {                                                                                                          \
        lerr_set(e, "rank %d sent a malformed %s (%zu bytes that do not decode)", from, kind, len);                   \
        return NULL;                                                                                                   \
    }

Lora__Push *wire_unpack_push(const uint8_t *buf, size_t len, int from, uint64_t n_params, struct lerr *e) {
    UNPACK_OR_FAIL(Lora__Push, lora__push__unpack, "Push");
    if (check_version(m->wire_version, "Push", from, e) ||
        check_payload(&m->payload, m->checksum, m->dtype, m->offset, m->count, n_params, "Push", from, e) ||
        (m->worker != (uint32_t)from &&
         lerr_set(e, "rank %d sent a Push that claims to come from rank %u", from, m->worker))) {
        lora__push__free_unpacked(m, NULL);
        return NULL;
    }
    return m;
}

Lora__Update *wire_unpack_update(const uint8_t *buf, size_t len, int from, uint64_t n_params, struct lerr *e) {
    UNPACK_OR_FAIL(Lora__Update, lora__update__unpack, "Update");
    if (check_version(m->wire_version, "Update", from, e) ||
        check_payload(&m->values, m->checksum, m->dtype, m->offset, m->count, n_params, "Update", from, e)) {
        lora__update__free_unpacked(m, NULL);
        return NULL;
    }
    return m;
}

Lora__Pull *wire_unpack_pull(const uint8_t *buf, size_t len, int from, struct lerr *e) {
    UNPACK_OR_FAIL(Lora__Pull, lora__pull__unpack, "Pull");
    if (check_version(m->wire_version, "Pull", from, e) ||
        (m->worker != (uint32_t)from &&
         lerr_set(e, "rank %d sent a Pull that claims to come from rank %u", from, m->worker))) {
        lora__pull__free_unpacked(m, NULL);
        return NULL;
    }
    return m;
}

Lora__Hello *wire_unpack_hello(const uint8_t *buf, size_t len, int from, struct lerr *e) {
    UNPACK_OR_FAIL(Lora__Hello, lora__hello__unpack, "Hello");
    if (check_version(m->wire_version, "Hello", from, e)) {
        lora__hello__free_unpacked(m, NULL);
        return NULL;
    }
    return m;
}

Lora__ShardStat *wire_unpack_shard_stat(const uint8_t *buf, size_t len, int from, struct lerr *e) {
    UNPACK_OR_FAIL(Lora__ShardStat, lora__shard_stat__unpack, "ShardStat");
    if (check_version(m->wire_version, "ShardStat", from, e)) {
        lora__shard_stat__free_unpacked(m, NULL);
        return NULL;
    }
    return m;
}

uint64_t wire_state_checksum(const Lora__ShardState *m) {
    return wire_checksum(m->values.data, m->values.len) ^ (wire_checksum(m->exp_avg.data, m->exp_avg.len) * 3) ^
           (wire_checksum(m->exp_avg_sq.data, m->exp_avg_sq.len) * 7);
}

Lora__ShardState *wire_unpack_shard_state(const uint8_t *buf, size_t len, int from, uint64_t n_params,
                                          struct lerr *e) {
    UNPACK_OR_FAIL(Lora__ShardState, lora__shard_state__unpack, "ShardState");
    int bad = check_version(m->wire_version, "ShardState", from, e);
    if (!bad && (m->offset > n_params || m->count > n_params - m->offset))
        bad = lerr_set(e, "rank %d sent a ShardState for keys outside the adapter", from);
    if (!bad && (m->values.len != m->count * 4 || m->exp_avg.len != m->count * 4 || m->exp_avg_sq.len != m->count * 4))
        bad = lerr_set(e, "rank %d sent a ShardState whose arrays do not hold %llu floats", from,
                       (unsigned long long)m->count);
    if (!bad && wire_state_checksum(m) != m->checksum)
        bad = lerr_set(e, "rank %d sent a ShardState whose checksum does not match", from);
    if (bad) {
        lora__shard_state__free_unpacked(m, NULL);
        return NULL;
    }
    return m;
}
