/* Directories and the working directory: readdir and getdents64, getcwd,
 * chdir and fchdir, opening and executing relative paths from the working
 * directory and from a directory fd, and their errors.  The host's working
 * directory is the tree's place on the host, vmgames' is "/": the probe
 * prints its working directory relative to where it started. */
#include "libc_probe.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>

struct linux_dirent64_ {
    unsigned long d_ino;
    long d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

static char start[4096];

static void show_cwd(const char *what)
{
    char buffer[4096];
    long length = RAW2(SYS_getcwd, buffer, sizeof buffer);
    if (length < 0) {
        show(what, length);
        return;
    }
    size_t skip = strcmp(start, "/") == 0 ? 0 : strlen(start);
    printf("%s: returns %s, \"%s\"\n", what, yes(length == (long)strlen(buffer) + 1),
           buffer[skip] ? buffer + skip : "/");
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* What readdir lists, sorted (the host's order is its disk's), with d_type and whether d_ino is lstat's. */
static void list(const char *path)
{
    DIR *directory = opendir(path);
    if (directory == NULL) {
        printf("opendir %s: %s\n", path, errno_name(errno));
        return;
    }
    char *lines[64];
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir(directory)) != NULL && count < 64) {
        char full[512];
        struct stat st;
        snprintf(full, sizeof full, "%s/%s", path, entry->d_name);
        lstat(full, &st);
        lines[count] = malloc(300);
        snprintf(lines[count++], 300, "%s type %d ino matches lstat: %s", entry->d_name, entry->d_type,
                 yes(entry->d_ino == st.st_ino));
    }
    closedir(directory);
    qsort(lines, count, sizeof lines[0], by_name);
    printf("readdir %s: %d entries\n", path, count);
    for (int i = 0; i < count; i++)
        printf("  %s\n", lines[i]);
}

/* Raw getdents64: records, d_off, buffer sizes, rewinding. */
static void read_records(void)
{
    static char buffer[4096];
    int fd = open("dir", O_RDONLY | O_DIRECTORY);
    long total = show("getdents64(dir, 4096)", RAW3(SYS_getdents64, fd, buffer, sizeof buffer));
    int records = 0, aligned = 1, offsets = 1;
    long previous_off = 0;
    for (long at = 0; at < total; records++) {
        struct linux_dirent64_ *record = (void *)(buffer + at);
        aligned &= record->d_reclen % 8 == 0 && record->d_reclen >= 19 + strlen(record->d_name) + 1;
        offsets &= record->d_off != previous_off;
        previous_off = record->d_off;
        at += record->d_reclen;
    }
    printf("  %d records, each 8-byte aligned and holding its name: %s, distinct d_off: %s\n", records,
           yes(aligned), yes(offsets));
    printf("@ getdents64 order:");
    for (long at = 0; at < total; at += ((struct linux_dirent64_ *)(buffer + at))->d_reclen)
        printf(" %s", ((struct linux_dirent64_ *)(buffer + at))->d_name);
    printf("\n");
    show("getdents64 at the end", RAW3(SYS_getdents64, fd, buffer, sizeof buffer));
    show("lseek(dir, 0, SEEK_SET)", RAW3(SYS_lseek, fd, 0, SEEK_SET));
    show("getdents64(dir, 10)", RAW3(SYS_getdents64, fd, buffer, 10));
    long one = show("getdents64(dir, 24): one record", RAW3(SYS_getdents64, fd, buffer, 24));
    long second = RAW3(SYS_getdents64, fd, buffer + one, sizeof buffer - one);
    printf("  the rest after it: %s\n", yes(one + second == total));
    /* d_off of a record is where the next one starts: seeking there reads on from it. */
    RAW3(SYS_lseek, fd, 0, SEEK_SET);
    RAW3(SYS_getdents64, fd, buffer, sizeof buffer);
    struct linux_dirent64_ *first = (void *)buffer;
    struct linux_dirent64_ *next = (void *)(buffer + first->d_reclen);
    show("lseek(dir, first d_off, SEEK_SET)", RAW3(SYS_lseek, fd, first->d_off, SEEK_SET) == first->d_off);
    static char again[4096];
    RAW3(SYS_getdents64, fd, again, sizeof again);
    printf("  reads on from the second record: %s\n",
           yes(strcmp(((struct linux_dirent64_ *)again)->d_name, next->d_name) == 0));
    show("getdents64 into a bad buffer", (RAW3(SYS_lseek, fd, 0, SEEK_SET),
                                          RAW3(SYS_getdents64, fd, BAD_POINTER, sizeof buffer)));
    show("getdents64 into read-only memory", RAW3(SYS_getdents64, fd, (void *)read_records, sizeof buffer));
    int file = open("hello.txt", O_RDONLY);
    show("getdents64(file)", RAW3(SYS_getdents64, file, buffer, sizeof buffer));
    show("getdents64(99)", RAW3(SYS_getdents64, 99, buffer, sizeof buffer));
    show("read(dir)", RAW3(SYS_read, fd, buffer, sizeof buffer));
    close(file);
    close(fd);
}

static void print_file(const char *what, int fd)
{
    char buffer[64] = {0};
    long n = fd < 0 ? -errno : RAW3(SYS_read, fd, buffer, sizeof buffer - 1);
    if (n < 0) {
        show(what, n);
        return;
    }
    buffer[strcspn(buffer, "\n")] = 0;
    printf("%s: \"%s\"\n", what, buffer);
}

int main(int argc, char **argv)
{
    probe_start();
    if (argc > 1 && strcmp(argv[1], "exec-child") == 0) {
        /* Run through a path relative to the parent's working directory. */
        strcpy(start, argv[2]);
        show_cwd("exec'd child's cwd");
        print_file("exec'd child reads \"a\"", open("a", O_RDONLY));
        return 3;
    }
    getcwd(start, sizeof start);
    show_cwd("getcwd at the start");
    list("dir");
    list("dir/sub");
    list(".");
    read_records();

    /* Relative paths from the working directory, which chdir and fchdir change. */
    FILE *text = fopen("hello.txt", "r");
    char line[64] = {0};
    printf("fopen(\"hello.txt\"): %s, \"%s\"\n", yes(text != NULL), text ? fgets(line, sizeof line, text) : "");
    int top = open(".", O_RDONLY | O_DIRECTORY);
    show("chdir(\"dir\")", RAW1(SYS_chdir, "dir"));
    show_cwd("getcwd");
    print_file("open(\"a\")", open("a", O_RDONLY));
    print_file("open(\"sub/deep\")", open("sub/deep", O_RDONLY));
    print_file("open(\"../hello.txt\")", open("../hello.txt", O_RDONLY));
    show("chdir(\"sub\")", RAW1(SYS_chdir, "sub"));
    show_cwd("getcwd");
    show("chdir(\"..\")", RAW1(SYS_chdir, ".."));
    show_cwd("getcwd");
    show("fchdir(the tree)", RAW1(SYS_fchdir, top));
    show_cwd("getcwd");
    show("chdir(\"dirlink\")", RAW1(SYS_chdir, "dirlink"));
    show_cwd("getcwd: the link resolved");
    show("chdir(\"sub/../..\")", RAW1(SYS_chdir, "sub/../.."));
    show_cwd("getcwd");
    show("chdir(\"hello.txt\")", RAW1(SYS_chdir, "hello.txt"));
    show("chdir(\"missing\")", RAW1(SYS_chdir, "missing"));
    show("chdir(\"loop1\")", RAW1(SYS_chdir, "loop1"));
    show("chdir(\"\")", RAW1(SYS_chdir, ""));
    show("chdir(NULL)", RAW1(SYS_chdir, NULL));
    int file = open("hello.txt", O_RDONLY);
    show("fchdir(file)", RAW1(SYS_fchdir, file));
    show("fchdir(99)", RAW1(SYS_fchdir, 99));
    int fds[2];
    pipe(fds);
    show("fchdir(pipe)", RAW1(SYS_fchdir, fds[0]));
    show_cwd("getcwd: unchanged");
    char small[4];
    show("getcwd(buffer, 1)", RAW2(SYS_getcwd, small, 1));
    show("getcwd(buffer, 0)", RAW2(SYS_getcwd, small, 0));
    show("getcwd(bad pointer, 4096)", RAW2(SYS_getcwd, BAD_POINTER, 4096));

    /* openat from a directory fd. */
    int directory = open("dir", O_RDONLY | O_DIRECTORY);
    print_file("openat(dir, \"a\")", openat(directory, "a", O_RDONLY));
    print_file("openat(dir, \"sub/../b\")", openat(directory, "sub/../b", O_RDONLY));
    show("openat(dir, \"sub\", O_DIRECTORY)", openat(directory, "sub", O_RDONLY | O_DIRECTORY) >= 0);
    show("openat(file, \"a\")", RAW4(SYS_openat, file, "a", O_RDONLY, 0));
    show("openat(99, \"a\")", RAW4(SYS_openat, 99, "a", O_RDONLY, 0));
    show("openat(99, \"\")", RAW4(SYS_openat, 99, "", O_RDONLY, 0));
    show("openat(dir, \"\")", RAW4(SYS_openat, directory, "", O_RDONLY, 0));
    show("open(\"link\", O_NOFOLLOW)", RAW3(SYS_open, "link", O_RDONLY | O_NOFOLLOW, 0));
    show("open(\"dirlink/a\", O_NOFOLLOW)", RAW3(SYS_open, "dirlink/a", O_RDONLY | O_NOFOLLOW, 0) >= 0);
    show("open(\"loop1\")", RAW3(SYS_open, "loop1", O_RDONLY, 0));
    show("open(\"hello.txt/\")", RAW3(SYS_open, "hello.txt/", O_RDONLY, 0));
    show("open(\"dir\", O_WRONLY)", RAW3(SYS_open, "dir", O_WRONLY, 0));

    /* execve of a relative path runs from the working directory. */
    pid_t child = probe_fork();
    if (child == 0) {
        chdir("dir");
        char program[300];
        snprintf(program, sizeof program, "../%s", strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0]);
        char *arguments[] = {program, "exec-child", start, NULL};
        execve(program, arguments, NULL);
        _exit(100 + errno);
    }
    int status;
    waitpid(child, &status, 0);
    printf("the exec'd child exited %d\n", WEXITSTATUS(status));

    /* The guest's root is the tree: its ".." is itself. */
    struct stat root, parent;
    int at_root = RAW1(SYS_chdir, "/") == 0 && RAW1(SYS_chdir, "..") == 0 && RAW1(SYS_chdir, "../..") == 0;
    char buffer[4096];
    RAW2(SYS_getcwd, buffer, sizeof buffer);
    stat("/", &root);
    stat("/..", &parent);
    printf("@ chdir /, .., ../..: %s, getcwd \"%s\"\n", yes(at_root), buffer);
    printf("@ / and /.. are one directory: %s\n", yes(root.st_ino == parent.st_ino && root.st_dev == parent.st_dev));
    printf("@ the working directory at the start: %s\n", start);
    return 0;
}
