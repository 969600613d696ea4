/* Finds the four MNIST files by their standard names. The uncompressed file
 * wins over its .gz so that someone who unpacked the files (to inspect or
 * fix them) gets what they unpacked. */
#include "cutrain/data.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* 1: a regular file (or a link to one); 0: nothing by that name; -1: something
 * else is there, said in *what (a directory, a FIFO, a dangling link, or
 * why it cannot be looked at). */
static int probe(const char *path, const char **what) {
    struct stat st;
    if (stat(path, &st) == 0) {
        if (S_ISREG(st.st_mode)) return 1;
        *what = S_ISDIR(st.st_mode)                          ? "a directory"
                : S_ISFIFO(st.st_mode)                       ? "a FIFO"
                : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device"
                                                             : "not a regular file";
        return -1;
    }
    if (errno != ENOENT) {
        *what = strerror(errno);
        return -1;
    }
    if (lstat(path, &st) == 0) {
        *what = "a symbolic link to nothing";
        return -1;
    }
    return 0;
}

static int join(char *out, size_t len, const char *dir, const char *name) {
    size_t dl = strlen(dir);
    const char *sep = dl > 0 && dir[dl - 1] == '/' ? "" : "/";
    int n = snprintf(out, len, "%s%s%s", dir, sep, name);
    return n >= 0 && (size_t)n < len ? 0 : -1;
}

/* what is "images" or "labels", idx "idx3" or "idx1". The preference order:
 * standard spelling raw, dotted spelling raw, standard .gz, dotted .gz. */
static int find_one(const char *dir, const char *prefix, const char *what, const char *idx,
                    const char *split, char *path, size_t len, ct_error *err) {
    char std_name[64], alt_name[64], cand[80];
    snprintf(std_name, sizeof std_name, "%s-%s-%s-ubyte", prefix, what, idx);
    snprintf(alt_name, sizeof alt_name, "%s-%s.%s-ubyte", prefix, what, idx);
    const char *names[2] = {std_name, alt_name};
    char odd[1024] = "";
    const char *odd_what = NULL;
    for (int gz = 0; gz < 2; ++gz)
        for (int k = 0; k < 2; ++k) {
            snprintf(cand, sizeof cand, "%s%s", names[k], gz ? ".gz" : "");
            if (join(path, len, dir, cand) != 0)
                return ct_fail(err, CT_EXIT_BAD_INPUT,
                               "%s: directory path too long for a %zu-byte path buffer", dir, len);
            const char *what_is = NULL;
            int found = probe(path, &what_is);
            if (found > 0) return 0;
            if (found < 0 && !odd_what) {
                snprintf(odd, sizeof odd, "%s", path);
                odd_what = what_is;
            }
        }
    path[0] = '\0';
    /* A file of the right name that cannot be read is not a missing one. */
    if (odd_what)
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: expected the MNIST %s %s as a file, found %s", odd, split, what,
                       odd_what);
    return ct_fail(err, CT_EXIT_BAD_INPUT,
                   "%s: no MNIST %s %s: expected %s or %s.gz (or %s[.gz])", dir, split, what,
                   std_name, std_name, alt_name);
}

static int check_dir(const char *dir, const char *split, ct_error *err) {
    struct stat st;
    if (stat(dir, &st) != 0)
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: cannot open MNIST directory: %s", dir,
                       strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return ct_fail(err, CT_EXIT_BAD_INPUT,
                       "%s: not a directory: expected the directory holding the MNIST %s files",
                       dir, split);
    return 0;
}

int ct_mnist_find(const char *dir, const char *split, char *images_path, char *labels_path,
                  size_t path_len, ct_error *err) {
    if (path_len > 0) images_path[0] = labels_path[0] = '\0';
    const char *prefix = strcmp(split, "train") == 0 ? "train"
                         : strcmp(split, "test") == 0 ? "t10k"
                                                      : NULL;
    if (!prefix)
        return ct_fail(err, CT_EXIT_USAGE, "MNIST split \"%s\": expected \"train\" or \"test\"",
                       split);
    if (path_len == 0)
        return ct_fail(err, CT_EXIT_FAILURE, "%s: no room for the MNIST paths", dir);
    if (check_dir(dir, split, err) != 0 ||
        find_one(dir, prefix, "images", "idx3", split, images_path, path_len, err) != 0 ||
        find_one(dir, prefix, "labels", "idx1", split, labels_path, path_len, err) != 0) {
        images_path[0] = labels_path[0] = '\0';
        return -1;
    }
    return 0;
}
