#include "src/io/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CT_NAME_MAX 255 /* bytes in one file name on Linux's file systems */

static int io_errno(void) { return errno ? errno : EIO; }

/* rename() is atomic but not durable until the directory reaches the disk.
 * Best effort only: some file systems refuse fsync on a directory, and by
 * then the new file is complete and in place, so there is nothing to undo. */
static void sync_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = !slash ? strdup(".") : slash == path ? strdup("/") : strndup(path, (size_t)(slash - path));
    if (!dir) return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        (void)fsync(fd);
        (void)close(fd);
    }
    free(dir);
}

int ct_atomic_open(ct_atomic_file *af, const char *path) {
    af->f = NULL;
    af->tmp = NULL;
    struct stat st;
    const int replaces = lstat(path, &st) == 0 && S_ISREG(st.st_mode);
    char suffix[32];
    const int sl = snprintf(suffix, sizeof suffix, ".tmp.%ld", (long)getpid());
    /* A name of up to NAME_MAX bytes must stay writable: its temporary
     * keeps the suffix and as much of the name as fits beside it. */
    const char *slash = strrchr(path, '/');
    const size_t dir_len = slash ? (size_t)(slash - path) + 1 : 0, base_len = strlen(path) - dir_len;
    const size_t keep = base_len + (size_t)sl > CT_NAME_MAX ? CT_NAME_MAX - (size_t)sl : base_len;
    size_t n = dir_len + keep + (size_t)sl + 1;
    char *tmp = malloc(n);
    if (!tmp) return ENOMEM;
    snprintf(tmp, n, "%.*s%s", (int)(dir_len + keep), path, suffix);
    const int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
    errno = 0;
    int fd = open(tmp, flags, 0666);
    /* The name is predictable, so nothing already there is written through;
     * a leftover of a killed run of an earlier process with this pid is
     * ours to take away. */
    if (fd < 0 && errno == EEXIST && unlink(tmp) == 0) fd = open(tmp, flags, 0666);
    if (fd < 0) {
        int e = io_errno();
        free(tmp);
        return e;
    }
    if (replaces) (void)fchmod(fd, st.st_mode & 07777); /* the replaced file's mode, not the umask's */
    errno = 0;
    af->f = fdopen(fd, "wb");
    if (!af->f) {
        int e = io_errno();
        (void)close(fd);
        (void)remove(tmp);
        free(tmp);
        return e;
    }
    af->tmp = tmp;
    return 0;
}

int ct_atomic_commit(ct_atomic_file *af, const char *path) {
    int e = 0;
    errno = 0;
    /* Flushed and synced before the rename: otherwise a crash soon after
     * could leave the name pointing at a file whose data never reached disk. */
    if (ferror(af->f) || fflush(af->f) != 0 || fsync(fileno(af->f)) != 0) e = io_errno();
    errno = 0;
    if (fclose(af->f) != 0 && !e) e = io_errno();
    af->f = NULL;
    if (!e && rename(af->tmp, path) != 0) e = io_errno();
    if (e) (void)remove(af->tmp); /* already failing; the first error is the one to report */
    free(af->tmp);
    af->tmp = NULL;
    if (!e) sync_parent_dir(path);
    return e;
}

void ct_atomic_abort(ct_atomic_file *af) {
    if (af->f) (void)fclose(af->f);
    if (af->tmp) (void)remove(af->tmp);
    free(af->tmp);
    af->f = NULL;
    af->tmp = NULL;
}
