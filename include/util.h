/* Small file helpers shared by loaders and writers. */
#ifndef UTIL_H
#define UTIL_H

#include <stddef.h>

#include "lerr.h"

/* Reads a whole text file (at most max bytes) into a NUL-terminated malloc'd
 * buffer; NULL with "path: cannot open: ..." on error. */
char *read_text_file(const char *path, size_t max, struct lerr *e);
/* mkdir -p; 0 on success or if it exists as a directory. */
int mkdir_p(const char *path, struct lerr *e);
/* Writes len bytes to path atomically: path.tmp.<pid>, fsync, rename. */
int write_file_atomic(const char *path, const void *data, size_t len, struct lerr *e);

#endif
