/*
 * File system helpers shared by the library and the binaries.
 */
#ifndef JW_COMMON_FS_H
#define JW_COMMON_FS_H

#include <stddef.h>
#include <sys/types.h>

/*
 * mkdir -p: creates path and the parents it lacks with mode (existing
 * ones are left as they are). Returns 0, -ENOTDIR when path exists but is
 * not a directory, -ENAMETOOLONG, or the -errno of the mkdir that failed.
 */
int jw__mkdir_p(const char *path, mode_t mode);

/*
 * Writes all len bytes of buf to fd, retrying after EINTR and waiting for
 * the fd (poll) when it is non-blocking. Returns 0 or -errno.
 */
int jw__write_all(int fd, const char *buf, size_t len);

#endif /* JW_COMMON_FS_H */
