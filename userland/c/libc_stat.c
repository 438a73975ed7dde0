/* The stat family: stat, lstat, fstat, newfstatat and statx on the tree
 * tests/test_files_syscalls.py makes (files, a directory, links, a FIFO),
 * on pipes and the standard descriptors, and every error Linux gives them,
 * in Linux's order.  Both kernels describe the same host files, so inode
 * numbers, devices, owners and times are printed as they are. */
#include "libc_probe.h"

#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

/* struct statx (include/uapi/linux/stat.h), spelled out: musl 1.2.3 has none. */
struct statx_timestamp_ {
    int64_t tv_sec;
    uint32_t tv_nsec;
    int32_t reserved;
};
struct statx_ {
    uint32_t stx_mask, stx_blksize;
    uint64_t stx_attributes;
    uint32_t stx_nlink, stx_uid, stx_gid;
    uint16_t stx_mode, spare0;
    uint64_t stx_ino, stx_size, stx_blocks, stx_attributes_mask;
    struct statx_timestamp_ stx_atime, stx_btime, stx_ctime, stx_mtime;
    uint32_t stx_rdev_major, stx_rdev_minor, stx_dev_major, stx_dev_minor;
    uint64_t spare[14];
};
#define STATX_BASIC_STATS_ 0x7ffU
#define AT_STATX_FORCE_SYNC_ 0x2000
#define AT_STATX_DONT_SYNC_ 0x4000
#ifndef AT_NO_AUTOMOUNT
#define AT_NO_AUTOMOUNT 0x800
#endif

static void describe(const char *what, const struct stat *st)
{
    printf("%s: %s mode %04o size %ld nlink %lu ino %lu dev %lu:%lu uid %u gid %u blksize %ld blocks %ld "
           "mtime %ld.%09ld ctime %ld.%09ld\n",
           what, file_type(st->st_mode), st->st_mode & 07777, (long)st->st_size, (unsigned long)st->st_nlink,
           (unsigned long)st->st_ino, (unsigned long)major(st->st_dev), (unsigned long)minor(st->st_dev),
           st->st_uid, st->st_gid, (long)st->st_blksize, (long)st->st_blocks, (long)st->st_mtim.tv_sec,
           st->st_mtim.tv_nsec, (long)st->st_ctim.tv_sec, st->st_ctim.tv_nsec);
}

static void stat_path(const char *path)
{
    struct stat st;
    char what[128];
    snprintf(what, sizeof what, "stat %s", path);
    if (show(what, RAW2(SYS_stat, path, &st)) == 0)
        describe(what, &st);
    snprintf(what, sizeof what, "lstat %s", path);
    if (show(what, RAW2(SYS_lstat, path, &st)) == 0)
        describe(what, &st);
}

/* statx must say what stat says. */
static void compare_statx(const char *path, int flags)
{
    struct stat st;
    struct statx_ sx;
    char what[128];
    snprintf(what, sizeof what, "statx %s flags %#x", path, flags);
    memset(&sx, 0xAA, sizeof sx);
    if (show(what, RAW5(SYS_statx, AT_FDCWD, path, flags, STATX_BASIC_STATS_, &sx)) != 0)
        return;
    RAW4(SYS_newfstatat, AT_FDCWD, path, &st, flags & AT_SYMLINK_NOFOLLOW);
    printf("%s: basic stats %s, agrees with stat: %s\n", what,
           yes((sx.stx_mask & STATX_BASIC_STATS_) == STATX_BASIC_STATS_),
           yes(sx.stx_mode == st.st_mode && sx.stx_ino == st.st_ino && sx.stx_size == (uint64_t)st.st_size
               && sx.stx_nlink == st.st_nlink && sx.stx_uid == st.st_uid && sx.stx_gid == st.st_gid
               && sx.stx_blocks == (uint64_t)st.st_blocks && sx.stx_blksize == (uint32_t)st.st_blksize
               && sx.stx_dev_major == major(st.st_dev) && sx.stx_dev_minor == minor(st.st_dev)
               && sx.stx_mtime.tv_sec == st.st_mtim.tv_sec && sx.stx_mtime.tv_nsec == st.st_mtim.tv_nsec
               && sx.stx_ctime.tv_sec == st.st_ctim.tv_sec && sx.stx_atime.tv_sec == st.st_atim.tv_sec));
}

int main(void)
{
    static const char *paths[] = {"hello.txt", "dir", "dir/a", "dir/sub/deep", "link", "dirlink", "dirlink/b",
                                  "dangling", "loop1", "fifo", "script.sh", "old.txt", "dir/../hello.txt", "./dir/sub/..",
                                  "dir/", "hello.txt/", "hello.txt/.", "hello.txt/x", "missing", "dir/missing/x",
                                  "link/", "dirlink/", "dangling/", "."};
    struct stat st, other;
    probe_start();
    for (unsigned i = 0; i < sizeof paths / sizeof paths[0]; i++)
        stat_path(paths[i]);

    /* Names too long for a component, and for a path. */
    char name[300];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = 0;
    show("stat of a 299-byte name", RAW2(SYS_stat, name, &st));
    static char path[5000];
    for (int i = 0; i < 4999; i++)
        path[i] = i % 2 ? '/' : '.';
    show("stat of a 4999-byte path", RAW2(SYS_stat, path, &st));

    /* Bad pointers: the path is read before the buffer is written; a missing file wins over a bad buffer. */
    show("stat(NULL)", RAW2(SYS_stat, NULL, &st));
    show("stat(bad pointer)", RAW2(SYS_stat, BAD_POINTER, &st));
    show("stat into a bad buffer", RAW2(SYS_stat, "hello.txt", BAD_POINTER));
    show("stat of a missing file into a bad buffer", RAW2(SYS_stat, "missing", BAD_POINTER));
    show("stat into read-only memory", RAW2(SYS_stat, "hello.txt", (void *)main));

    /* fstat: files, directories, pipes, the standard descriptors. */
    int file = open("hello.txt", O_RDONLY);
    int directory = open("dir", O_RDONLY | O_DIRECTORY);
    show("fstat of hello.txt", RAW2(SYS_fstat, file, &st));
    RAW2(SYS_stat, "hello.txt", &other);
    printf("fstat and stat agree: %s\n", yes(memcmp(&st, &other, sizeof st) == 0));
    show("fstat of dir", RAW2(SYS_fstat, directory, &st));
    describe("fstat of dir", &st);
    show("fstat(99)", RAW2(SYS_fstat, 99, &st));
    show("fstat(-1)", RAW2(SYS_fstat, -1, &st));
    show("fstat into a bad buffer", RAW2(SYS_fstat, file, BAD_POINTER));
    show("fstat(99) into a bad buffer", RAW2(SYS_fstat, 99, BAD_POINTER));
    int fds[2];
    pipe(fds);
    for (int end = 0; end < 2; end++) {
        show(end ? "fstat of a pipe's write end" : "fstat of a pipe's read end", RAW2(SYS_fstat, fds[end], &st));
        printf("  %s mode %04o size %ld nlink %lu blksize %ld owner is the caller: %s\n", file_type(st.st_mode),
               st.st_mode & 07777, (long)st.st_size, (unsigned long)st.st_nlink, (long)st.st_blksize,
               yes(st.st_uid == getuid() && st.st_gid == getgid()));
    }
    RAW2(SYS_fstat, fds[0], &st);
    RAW2(SYS_fstat, fds[1], &other);
    printf("both ends are one inode: %s\n", yes(st.st_ino == other.st_ino && st.st_dev == other.st_dev));
    int second[2];
    pipe(second);
    RAW2(SYS_fstat, second[0], &other);
    printf("another pipe is another inode: %s\n", yes(st.st_ino != other.st_ino));
    for (int fd = 0; fd < 3; fd++) {
        char what[32];
        snprintf(what, sizeof what, "fstat(%d)", fd);
        if (show(what, RAW2(SYS_fstat, fd, &st)) == 0)
            printf("  %s\n", file_type(st.st_mode));
    }

    /* newfstatat: relative to a directory fd, AT_EMPTY_PATH, AT_SYMLINK_NOFOLLOW, and its errors. */
    show("newfstatat(dir fd, \"a\")", RAW4(SYS_newfstatat, directory, "a", &st, 0));
    describe("newfstatat(dir fd, \"a\")", &st);
    show("newfstatat(dir fd, \"../link\", NOFOLLOW)", RAW4(SYS_newfstatat, directory, "../link", &st,
                                                          AT_SYMLINK_NOFOLLOW));
    printf("  %s\n", file_type(st.st_mode));
    show("newfstatat(dir fd, \"\", AT_EMPTY_PATH)", RAW4(SYS_newfstatat, directory, "", &st, AT_EMPTY_PATH));
    printf("  %s\n", file_type(st.st_mode));
    show("newfstatat(pipe, \"\", AT_EMPTY_PATH)", RAW4(SYS_newfstatat, fds[0], "", &st, AT_EMPTY_PATH));
    printf("  %s\n", file_type(st.st_mode));
    show("newfstatat(pipe, NULL, AT_EMPTY_PATH)", RAW4(SYS_newfstatat, fds[0], NULL, &st, AT_EMPTY_PATH));
    show("newfstatat(pipe, \"\", AT_EMPTY_PATH | 0x8000)",
         RAW4(SYS_newfstatat, fds[0], "", &st, AT_EMPTY_PATH | 0x8000));
    show("newfstatat(AT_FDCWD, \"\", AT_EMPTY_PATH)", RAW4(SYS_newfstatat, AT_FDCWD, "", &st, AT_EMPTY_PATH));
    RAW2(SYS_stat, ".", &other);
    printf("  the working directory: %s\n", yes(st.st_ino == other.st_ino));
    show("newfstatat(AT_FDCWD, NULL, AT_EMPTY_PATH)", RAW4(SYS_newfstatat, AT_FDCWD, NULL, &st, AT_EMPTY_PATH));
    show("newfstatat(AT_FDCWD, \"\", 0)", RAW4(SYS_newfstatat, AT_FDCWD, "", &st, 0));
    show("newfstatat(99, \"\", AT_EMPTY_PATH)", RAW4(SYS_newfstatat, 99, "", &st, AT_EMPTY_PATH));
    show("newfstatat(99, \"x\", 0)", RAW4(SYS_newfstatat, 99, "x", &st, 0));
    show("newfstatat(99, \"\", 0)", RAW4(SYS_newfstatat, 99, "", &st, 0));
    show("newfstatat(file fd, \"x\", 0)", RAW4(SYS_newfstatat, file, "x", &st, 0));
    show("newfstatat(file fd, \"\", 0)", RAW4(SYS_newfstatat, file, "", &st, 0));
    show("newfstatat(..., flags 0x8000)", RAW4(SYS_newfstatat, AT_FDCWD, "hello.txt", &st, 0x8000));
    show("newfstatat(bad pointer, flags 0x8000)", RAW4(SYS_newfstatat, AT_FDCWD, BAD_POINTER, &st, 0x8000));
    show("newfstatat(missing, flags 0x8000)", RAW4(SYS_newfstatat, AT_FDCWD, "missing", &st, 0x8000));
    show("newfstatat(..., AT_NO_AUTOMOUNT)", RAW4(SYS_newfstatat, AT_FDCWD, "hello.txt", &st, AT_NO_AUTOMOUNT));
    show("newfstatat(dangling, NOFOLLOW)", RAW4(SYS_newfstatat, AT_FDCWD, "dangling", &st, AT_SYMLINK_NOFOLLOW));
    printf("  %s size %ld\n", file_type(st.st_mode), (long)st.st_size);

    /* statx: the same answers, and its own errors. */
    static const char *statx_paths[] = {"hello.txt", "dir", "link", "fifo", "dirlink/a", "old.txt"};
    for (unsigned i = 0; i < sizeof statx_paths / sizeof statx_paths[0]; i++) {
        compare_statx(statx_paths[i], 0);
        compare_statx(statx_paths[i], AT_SYMLINK_NOFOLLOW);
    }
    struct statx_ sx;
    show("statx(missing)", RAW5(SYS_statx, AT_FDCWD, "missing", 0, STATX_BASIC_STATS_, &sx));
    show("statx(loop1)", RAW5(SYS_statx, AT_FDCWD, "loop1", 0, STATX_BASIC_STATS_, &sx));
    show("statx(pipe, \"\", AT_EMPTY_PATH)", RAW5(SYS_statx, fds[1], "", AT_EMPTY_PATH, STATX_BASIC_STATS_, &sx));
    printf("  %s\n", file_type(sx.stx_mode));
    show("statx(pipe, NULL, AT_EMPTY_PATH | 0x8000)",
         RAW5(SYS_statx, fds[1], NULL, AT_EMPTY_PATH | 0x8000, STATX_BASIC_STATS_, &sx));
    show("statx(..., mask STATX__RESERVED)", RAW5(SYS_statx, AT_FDCWD, "hello.txt", 0, 0x80000000U, &sx));
    show("statx(bad pointer, mask STATX__RESERVED)", RAW5(SYS_statx, AT_FDCWD, BAD_POINTER, 0, 0x80000000U, &sx));
    show("statx(pipe, \"\", AT_EMPTY_PATH, mask STATX__RESERVED)",
         RAW5(SYS_statx, fds[1], "", AT_EMPTY_PATH, 0x80000000U, &sx));
    show("statx(..., both sync types)",
         RAW5(SYS_statx, AT_FDCWD, "hello.txt", AT_STATX_FORCE_SYNC_ | AT_STATX_DONT_SYNC_, STATX_BASIC_STATS_, &sx));
    show("statx(..., flags 0x8000)", RAW5(SYS_statx, AT_FDCWD, "hello.txt", 0x8000, STATX_BASIC_STATS_, &sx));
    show("statx(bad pointer)", RAW5(SYS_statx, AT_FDCWD, BAD_POINTER, 0, STATX_BASIC_STATS_, &sx));
    show("statx into a bad buffer", RAW5(SYS_statx, AT_FDCWD, "hello.txt", 0, STATX_BASIC_STATS_, BAD_POINTER));
    show("statx(99, \"\", AT_EMPTY_PATH)", RAW5(SYS_statx, 99, "", AT_EMPTY_PATH, STATX_BASIC_STATS_, &sx));
    show("statx(file fd, \"x\")", RAW5(SYS_statx, file, "x", 0, STATX_BASIC_STATS_, &sx));

    /* The libc wrappers (glibc's fstat is newfstatat(fd, "", AT_EMPTY_PATH); musl's may be statx). */
    int result = stat("dir/a", &st);
    printf("libc stat(\"dir/a\"): %d, size %ld\n", result, (long)st.st_size);
    result = fstat(fds[0], &st);
    printf("libc fstat(pipe): %d, %s\n", result, file_type(st.st_mode));
    result = lstat("missing", &st);
    printf("libc lstat(\"missing\"): %d, %s\n", result, errno_name(errno));

    /* Absolute paths are the guest's root on vmgames, the host's on the host. */
    printf("@ stat /hello.txt: %s\n", RAW2(SYS_stat, "/hello.txt", &st) == 0 ? "found" : "missing");
    printf("@ stat abslink (-> /hello.txt): %s\n", RAW2(SYS_stat, "abslink", &st) == 0 ? "found" : "missing");
    return 0;
}
