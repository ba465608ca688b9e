/* File helpers (see include/util.h). */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *read_text_file(const char *path, size_t max, struct lerr *e) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO must not block */
    if (fd < 0) {
        lerr_set(e, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        lerr_set(e, "%s: not a regular file", path);
        return NULL;
    }
    if ((size_t)sb.st_size > max) {
        close(fd);
        lerr_set(e, "%s: too large (%lld bytes, at most %zu)", path, (long long)sb.st_size, max);
        return NULL;
    }
    size_t n = (size_t)sb.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        close(fd);
        lerr_set(e, "%s: out of memory", path);
        return NULL;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t k = read(fd, buf + got, n - got);
        if (k <= 0) {
            free(buf);
            close(fd);
            lerr_set(e, "%s: read failed: %s", path, k < 0 ? strerror(errno) : "unexpected end of file");
            return NULL;
        }
        got += (size_t)k;
    }
    close(fd);
    buf[n] = 0;
    return buf;
}

int mkdir_p(const char *path, struct lerr *e) {
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return lerr_set(e, "%s: bad directory path", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        char c = buf[i];
        buf[i] = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) return lerr_set(e, "%s: cannot create: %s", buf, strerror(errno));
        buf[i] = c;
    }
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) return lerr_set(e, "%s: not a directory", path);
    return 0;
}

int dir_check_writable(const char *path, struct lerr *e) {
    if (mkdir_p(path, e)) return -1;
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/.lora-probe.%ld", path, (long)getpid());
    int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) return lerr_set(e, "%s: cannot write files there: %s", path, strerror(errno));
    close(fd);
    unlink(probe);
    return 0;
}

int write_file_atomic(const char *path, const void *data, size_t len, struct lerr *e) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return lerr_set(e, "%s: cannot create: %s", tmp, strerror(errno));
    const char *p = data;
    size_t left = len;
    while (left) {
        ssize_t k = write(fd, p, left);
        if (k < 0) {
            if (errno == EINTR) continue;
            int er = errno;
            close(fd);
            unlink(tmp);
            return lerr_set(e, "%s: write failed: %s", path, strerror(er));
        }
        p += k;
        left -= (size_t)k;
    }
    if (fsync(fd) != 0) {
        int er = errno;
        close(fd);
        unlink(tmp);
        return lerr_set(e, "%s: fsync failed: %s", path, strerror(er));
    }
    if (close(fd) != 0) {
        unlink(tmp);
        return lerr_set(e, "%s: close failed: %s", path, strerror(errno));
    }
    if (rename(tmp, path) != 0) {
        int er = errno;
        unlink(tmp);
        return lerr_set(e, "%s: rename failed: %s", path, strerror(er));
    }
    return 0;
}

uint64_t hash64(const void *p, size_t n, uint64_t seed) {
    const unsigned char *b = p;
    uint64_t h[4] = {seed ^ 0x243f6a8885a308d3ull, seed ^ 0x13198a2e03707344ull, seed ^ 0xa4093822299f31d0ull,
                     seed ^ 0x082efa98ec4e6c89ull};
    size_t i = 0;
    /* four independent lanes so the multiplies overlap */
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 4; k++) {
            uint64_t w;
            memcpy(&w, b + i + 8 * k, 8);
            h[k] = (h[k] ^ w) * 0x9e3779b97f4a7c15ull;
            h[k] ^= h[k] >> 29;
        }
    uint64_t x = h[0] ^ (h[1] * 3) ^ (h[2] * 5) ^ (h[3] * 7);
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        x = (x ^ w) * 0x9e3779b97f4a7c15ull;
        x ^= x >> 29;
    }
    uint64_t tail = 0;
    if (n > i) memcpy(&tail, b + i, n - i);
    x ^= tail + n;
    /* splitmix64 finalizer */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

void mem_usage(uint64_t *rss, uint64_t *pss, uint64_t *private_bytes) {
    *rss = *pss = *private_bytes = 0;
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    if (!f) return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        unsigned long long kb;
        if (sscanf(line, "Rss: %llu kB", &kb) == 1) *rss = kb * 1024;
        else if (sscanf(line, "Pss: %llu kB", &kb) == 1) *pss = kb * 1024;
        else if (sscanf(line, "Private_Clean: %llu kB", &kb) == 1) *private_bytes += kb * 1024;
        else if (sscanf(line, "Private_Dirty: %llu kB", &kb) == 1) *private_bytes += kb * 1024;
    }
    fclose(f);
}

int64_t first_nonfinite(const float *x, size_t n) {
    enum { BLOCK = 4096 };
    for (size_t b = 0; b < n; b += BLOCK) {
        size_t e = b + BLOCK < n ? b + BLOCK : n;
        uint32_t any = 0;
        for (size_t i = b; i < e; i++) {
            uint32_t u;
            memcpy(&u, x + i, 4);
            any |= (u & 0x7f800000u) == 0x7f800000u;
        }
        if (!any) continue;
        for (size_t i = b; i < e; i++) {
            uint32_t u;
            memcpy(&u, x + i, 4);
            if ((u & 0x7f800000u) == 0x7f800000u) return (int64_t)i;
        }
    }
    return -1;
}

const char *nonfinite_name(float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    if (u & 0x007fffffu) return "NaN";
    return u >> 31 ? "-inf" : "+inf";
}
