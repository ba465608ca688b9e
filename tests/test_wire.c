/*
 * Wire messages: round trips of every kind, payload dtypes, and the checked
 * decoders' answers to corrupted, truncated, foreign-version and random input
 * (an error naming the sender, never a crash).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "testutil.h"
#include "wire.h"

static uint8_t *make_push(const float *g, size_t n, int dtype, uint32_t version, size_t *len) {
    size_t ds = wire_dtype_size(dtype);
    uint8_t *payload = malloc(n * ds);
    wire_encode_floats(payload, g, n, dtype);
    Lora__Push m = LORA__PUSH__INIT;
    m.wire_version = version;
    m.step = 7;
    m.worker = 3;
    m.n_tokens = 120;
    m.loss_sum = 5.5;
    m.dtype = dtype;
    m.offset = 10;
    m.count = n;
    m.payload.data = payload;
    m.payload.len = n * ds;
    m.checksum = wire_checksum(payload, n * ds);
    uint8_t *buf = wire_pack(&m.base, len);
    free(payload);
    return buf;
}

int main(void) {
    enum { N = 1000, NP = 5000 };
    float g[N], back[N];
    rng_t r;
    rng_seed(&r, 3);
    for (int i = 0; i < N; i++) g[i] = (2 * rng_uniform(&r) - 1) * powf(10.0f, (float)(i % 9) - 6.0f);
    struct lerr e;
    for (int dt = 0; dt < 3; dt++) {
        size_t len;
        uint8_t *buf = make_push(g, N, dt, WIRE_VERSION, &len);
        Lora__Push *m = wire_unpack_push(buf, len, 3, NP, &e);
        CHECK(m != NULL, "%s push decodes: %s", wire_dtype_name(dt), m ? "" : e.msg);
        if (m) {
            CHECK(m->step == 7 && m->n_tokens == 120 && m->loss_sum == 5.5 && m->offset == 10 && m->count == N,
                  "push fields round trip");
            wire_decode_floats(back, m->payload.data, N, m->dtype, 0);
            double err = tu_rel_err(back, g, N);
            /* fp32 exact; bf16 keeps 8 bits of mantissa (rel. error <= 2^-9), fp16 11 bits but loses values
             * below its subnormal range (about 6e-8), so its error is larger on tiny gradients */
            double tol = dt == 0 ? 0 : dt == 1 ? 4e-3 : 2e-3;
            printf("  %s payload: relative error %.2e\n", wire_dtype_name(dt), err);
            CHECK(err <= tol, "%s payload error %g > %g", wire_dtype_name(dt), err, tol);
            lora__push__free_unpacked(m, NULL);
        }
        free(buf);
    }
    size_t len;
    uint8_t *buf = make_push(g, N, 0, WIRE_VERSION, &len);
    /* a flipped payload byte: the checksum catches it */
    buf[len / 2] ^= 0x40;
    CHECK(!wire_unpack_push(buf, len, 3, NP, &e) && strstr(e.msg, "rank 3") && strstr(e.msg, "checksum"),
          "flipped byte: %s", e.msg);
    buf[len / 2] ^= 0x40;
    /* truncated */
    CHECK(!wire_unpack_push(buf, len - 100, 3, NP, &e) && strstr(e.msg, "rank 3"), "truncated: %s", e.msg);
    /* another sender than it claims */
    CHECK(!wire_unpack_push(buf, len, 4, NP, &e) && strstr(e.msg, "claims to come from rank 3"), "sender: %s", e.msg);
    /* a key range outside the adapter */
    CHECK(!wire_unpack_push(buf, len, 3, 500, &e) && strstr(e.msg, "outside"), "range: %s", e.msg);
    free(buf);
    buf = make_push(g, N, 0, 9, &len);
    CHECK(!wire_unpack_push(buf, len, 3, NP, &e) && strstr(e.msg, "wire version 9") &&
              strstr(e.msg, "speaks wire version 1"),
          "version: %s", e.msg);
    free(buf);
    /* random bytes and random mutations of a valid message: never a crash, always a message */
    buf = make_push(g, 64, 1, WIRE_VERSION, &len);
    uint8_t *mut = malloc(len);
    int accepted = 0, rejected = 0;
    for (int it = 0; it < 20000; it++) {
        memcpy(mut, buf, len);
        int k = 1 + (int)(rng_next(&r) % 4);
        for (int j = 0; j < k; j++) mut[rng_next(&r) % len] = (uint8_t)rng_next(&r);
        size_t l = it % 3 == 0 ? (size_t)(rng_next(&r) % len) : len;
        e.msg[0] = 0;
        Lora__Push *m = wire_unpack_push(mut, l, 3, NP, &e);
        if (m) {
            accepted++;
            lora__push__free_unpacked(m, NULL);
        } else {
            rejected++;
            if (!e.msg[0]) CHECK(0, "a rejected message left no error text");
        }
        Lora__Update *u = wire_unpack_update(mut, l, 3, NP, &e);
        if (u) lora__update__free_unpacked(u, NULL);
        Lora__Hello *h = wire_unpack_hello(mut, l, 3, &e);
        if (h) lora__hello__free_unpacked(h, NULL);
    }
    printf("  20000 mutated pushes: %d rejected with a message, %d still valid (mutations outside the checked fields)\n",
           rejected, accepted);
    CHECK(rejected > 15000, "most mutations must be caught (%d of 20000)", rejected);
    free(mut);
    free(buf);
    /* Update and ShardState round trips */
    uint8_t vals[40];
    wire_encode_floats(vals, g, 10, 0);
    Lora__Update u = LORA__UPDATE__INIT;
    u.wire_version = WIRE_VERSION;
    u.adapter_version = 12;
    u.count = 10;
    u.values.data = vals;
    u.values.len = 40;
    u.checksum = wire_checksum(vals, 40);
    buf = wire_pack(&u.base, &len);
    Lora__Update *ud = wire_unpack_update(buf, len, 0, NP, &e);
    CHECK(ud && ud->adapter_version == 12 && ud->count == 10, "update round trip");
    if (ud) lora__update__free_unpacked(ud, NULL);
    free(buf);
    Lora__ShardState s = LORA__SHARD_STATE__INIT;
    s.wire_version = WIRE_VERSION;
    s.count = 10;
    s.values.data = s.exp_avg.data = s.exp_avg_sq.data = vals;
    s.values.len = s.exp_avg.len = s.exp_avg_sq.len = 40;
    s.opt_steps = 5;
    s.checksum = wire_state_checksum(&s);
    buf = wire_pack(&s.base, &len);
    Lora__ShardState *sd = wire_unpack_shard_state(buf, len, 1, NP, &e);
    CHECK(sd && sd->opt_steps == 5, "shard state round trip");
    if (sd) lora__shard_state__free_unpacked(sd, NULL);
    buf[len - 3] ^= 1;
    sd = wire_unpack_shard_state(buf, len, 1, NP, &e);
    CHECK(!sd, "corrupted shard state rejected");
    if (sd) lora__shard_state__free_unpacked(sd, NULL);
    free(buf);
    return tu_end("test_wire");
}
