/*
 * wire_: encoding and checked decoding of the parameter server's messages
 * (proto/lora.proto, protobuf-c). No MPI here: the glue sends the bytes.
 *
 * Every decode validates: protobuf well-formedness, wire_version, dtype,
 * payload length = count x dtype size, the payload checksum, and the key
 * range against the adapter's size. A failure returns NULL and a message
 * naming the sender rank, the message kind and the reason, so the receiver
 * can report it and abort the job cleanly. Fuzzed by tests/test_wire.c.
 */
#ifndef WIRE_H
#define WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "lerr.h"
#include "lora.pb-c.h"

#define WIRE_VERSION 1

/* Bytes per value of a payload dtype (LORA__DTYPE__F32/BF16/F16). */
size_t wire_dtype_size(int dtype);
const char *wire_dtype_name(int dtype);
/* Parses "fp32", "bf16", "fp16". -1 if unknown. */
int wire_dtype_parse(const char *s);

/* dst (n x dtype size bytes) = src converted (round to nearest even). */
void wire_encode_floats(void *dst, const float *src, size_t n, int dtype);
/* dst = src converted to float, or added into dst when accumulate. */
void wire_decode_floats(float *dst, const void *src, size_t n, int dtype, int accumulate);

/* An Update carrying values[0..count) (the keys [offset, offset + count)),
 * converted to dtype, with its checksum: one packed, malloc'd buffer. */
uint8_t *wire_pack_update(const float *values, uint64_t offset, uint64_t count, int dtype, uint64_t version,
                          uint64_t step, int status, size_t *len);

/* Packs any message into a malloc'd buffer; *len its size. */
uint8_t *wire_pack(const ProtobufCMessage *m, size_t *len);

/* Checked decoders. `from` names the sender in messages; `n_params` bounds
 * the key range. The result is freed with the matching __free_unpacked. */
Lora__Push *wire_unpack_push(const uint8_t *buf, size_t len, int from, uint64_t n_params, struct lerr *e);
Lora__Update *wire_unpack_update(const uint8_t *buf, size_t len, int from, uint64_t n_params, struct lerr *e);
Lora__Pull *wire_unpack_pull(const uint8_t *buf, size_t len, int from, struct lerr *e);
Lora__Hello *wire_unpack_hello(const uint8_t *buf, size_t len, int from, struct lerr *e);
Lora__ShardStat *wire_unpack_shard_stat(const uint8_t *buf, size_t len, int from, struct lerr *e);

Lora__ShardState *wire_unpack_shard_state(const uint8_t *buf, size_t len, int from, uint64_t n_params,
                                          struct lerr *e);
/* Checksum of a ShardState's three arrays. */
uint64_t wire_state_checksum(const Lora__ShardState *m);

/* Payload checksum (hash64 of the bytes). */
uint64_t wire_checksum(const void *p, size_t n);

#endif
