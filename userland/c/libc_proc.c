/* /proc/self and names: readlink and readlinkat (of links in the tree and
 * of /proc/self/exe), /proc/self/maps in Linux's format, opening and
 * re-executing the program through /proc/self/exe, and access, faccessat
 * and faccessat2.  The tree is writable on the host and read-only on
 * vmgames: what W_OK says is on "@" lines. */
#include "libc_probe.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>

static void show_link(const char *what, long length, const char *buffer)
{
    if (length < 0)
        show(what, length);
    else
        printf("%s: %ld \"%.*s\"\n", what, length, (int)length, buffer);
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* Every line of maps as Linux's show_map_vma prints it; the program's own lines that are not writable. */
static void check_maps(const char *program)
{
    static char text[65536];
    int fd = open("/proc/self/maps", O_RDONLY);
    long total = 0, n;
    while ((n = read(fd, text + total, sizeof text - 1 - total)) > 0)
        total += n;
    text[total] = 0;
    close(fd);
    int lines = 0, well_formed = 1, heap = 0, stack = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        unsigned long start, end, offset, inode;
        unsigned major, minor;
        char perms[5];
        int consumed = 0;
        lines++;
        if (sscanf(line, "%lx-%lx %4s %lx %x:%x %lu %n", &start, &end, perms, &offset, &major, &minor, &inode,
                   &consumed) != 7) {
            well_formed = 0;
            continue;
        }
        const char *name = line + consumed;
        size_t length = strlen(line);
        /* A name starts in column 73 (25 + 6 * sizeof(void *) - 1, then a space); a line without one ends in
         * the space after the inode. */
        if (*name)
            well_formed &= consumed == 73 || (consumed > 73 && line[consumed - 2] != ' ');
        else
            well_formed &= line[length - 1] == ' ';
        well_formed &= start < end && start % 4096 == 0 && end % 4096 == 0;
        heap |= strcmp(name, "[heap]") == 0;
        stack |= strcmp(name, "[stack]") == 0;
        if (*name == '/' && strcmp(base_name(name), program) == 0 && perms[1] != 'w')
            printf("  %lx-%lx %s %08lx %s\n", start, end, perms, offset, base_name(name));
    }
    printf("maps: every line well formed: %s, a [heap]: %s, a [stack]: %s, more than 4 lines: %s\n",
           yes(well_formed), yes(heap), yes(stack), yes(lines > 4));
}

int main(int argc, char **argv)
{
    probe_start();
    if (argc > 1 && strcmp(argv[1], "again") == 0) {
        printf("re-executed through /proc/self/exe: argc %d, argv[0] \"%s\"\n", argc, argv[0]);
        return 7;
    }
    const char *program = base_name(argv[0]);
    char buffer[4096];
    struct stat st, other;

    /* readlink of the tree's links. */
    show_link("readlink(\"link\")", RAW3(SYS_readlink, "link", buffer, sizeof buffer), buffer);
    show_link("readlink(\"dangling\")", RAW3(SYS_readlink, "dangling", buffer, sizeof buffer), buffer);
    show_link("readlink(\"dirlink\")", RAW3(SYS_readlink, "dirlink", buffer, sizeof buffer), buffer);
    show_link("readlink(\"loop1\")", RAW3(SYS_readlink, "loop1", buffer, sizeof buffer), buffer);
    show_link("readlink(\"link\", 3 bytes)", RAW3(SYS_readlink, "link", buffer, 3), buffer);
    show_link("readlink(\"hello.txt\")", RAW3(SYS_readlink, "hello.txt", buffer, sizeof buffer), buffer);
    show_link("readlink(\"dir\")", RAW3(SYS_readlink, "dir", buffer, sizeof buffer), buffer);
    show_link("readlink(\"missing\")", RAW3(SYS_readlink, "missing", buffer, sizeof buffer), buffer);
    show_link("readlink(\"dangling/x\")", RAW3(SYS_readlink, "dangling/x", buffer, sizeof buffer), buffer);
    show_link("readlink(\"dirlink/\")", RAW3(SYS_readlink, "dirlink/", buffer, sizeof buffer), buffer);
    show_link("readlink(\"link\", 0 bytes)", RAW3(SYS_readlink, "link", buffer, 0), buffer);
    show_link("readlink(\"missing\", -1 bytes)", RAW3(SYS_readlink, "missing", buffer, -1), buffer);
    show_link("readlink(\"link\") into a bad buffer", RAW3(SYS_readlink, "link", BAD_POINTER, 10), buffer);
    show_link("readlink(bad pointer)", RAW3(SYS_readlink, BAD_POINTER, buffer, 10), buffer);
    int directory = open("dir", O_RDONLY | O_DIRECTORY);
    int fds[2];
    pipe(fds);
    show_link("readlinkat(dir, \"../link\")", RAW4(SYS_readlinkat, directory, "../link", buffer, 100), buffer);
    show_link("readlinkat(dir, \"\")", RAW4(SYS_readlinkat, directory, "", buffer, 100), buffer);
    show_link("readlinkat(pipe, \"\")", RAW4(SYS_readlinkat, fds[0], "", buffer, 100), buffer);
    show_link("readlinkat(AT_FDCWD, \"\")", RAW4(SYS_readlinkat, AT_FDCWD, "", buffer, 100), buffer);
    show_link("readlinkat(99, \"link\")", RAW4(SYS_readlinkat, 99, "link", buffer, 100), buffer);
    show_link("readlinkat(pipe, \"link\")", RAW4(SYS_readlinkat, fds[0], "link", buffer, 100), buffer);

    /* /proc/self: the caller's own /proc/<pid>. */
    long length = RAW3(SYS_readlink, "/proc/self", buffer, sizeof buffer);
    buffer[length > 0 ? length : 0] = 0;
    printf("readlink(\"/proc/self\") is the pid: %s\n", yes(atoi(buffer) == getpid()));
    length = RAW3(SYS_readlink, "/proc/self/exe", buffer, sizeof buffer);
    buffer[length > 0 ? length : 0] = 0;
    printf("readlink(\"/proc/self/exe\") names the program: %s\n", yes(strcmp(base_name(buffer), program) == 0));
    printf("@ readlink(\"/proc/self/exe\"): %s\n", buffer);
    char path[64], again[4096];
    snprintf(path, sizeof path, "/proc/%d/exe", getpid());
    length = RAW3(SYS_readlink, path, again, sizeof again);
    again[length > 0 ? length : 0] = 0;
    printf("readlink(\"/proc/<pid>/exe\") is the same: %s\n", yes(strcmp(again, buffer) == 0));
    show_link("readlink(\"/proc/self/exe\", 1 byte)", RAW3(SYS_readlink, "/proc/self/exe", buffer, 1), buffer);
    show("readlink(\"/proc/0x7ffffff0/exe\")", RAW3(SYS_readlink, "/proc/2147483632/exe", buffer, 100));
    show("lstat(\"/proc/self/exe\")", RAW2(SYS_lstat, "/proc/self/exe", &st));
    printf("  %s\n", file_type(st.st_mode));
    show("stat(\"/proc/self/exe\")", RAW2(SYS_stat, "/proc/self/exe", &st));
    RAW2(SYS_stat, argv[0], &other);
    printf("  the program's file: %s\n", yes(st.st_ino == other.st_ino && st.st_dev == other.st_dev));
    int exe = open("/proc/self/exe", O_RDONLY);
    char magic[4] = {0};
    read(exe, magic, 4);
    printf("open(\"/proc/self/exe\") reads an ELF: %s\n", yes(memcmp(magic, "\177ELF", 4) == 0));
    RAW2(SYS_fstat, exe, &st);
    printf("  fstat says the program's file: %s\n", yes(st.st_ino == other.st_ino));
    show("stat(\"/proc/self/maps\")", RAW2(SYS_stat, "/proc/self/maps", &st));
    printf("  %s mode %04o size %ld\n", file_type(st.st_mode), st.st_mode & 07777, (long)st.st_size);
    show("stat(\"/proc/self\")", RAW2(SYS_stat, "/proc/self", &st));
    printf("  %s\n", file_type(st.st_mode));
    show("open(\"/proc/self/maps\", O_WRONLY)", RAW3(SYS_open, "/proc/self/maps", O_WRONLY, 0));
    show("open(\"/proc/self/exe/x\")", RAW3(SYS_open, "/proc/self/exe/x", O_RDONLY, 0));
    show("open(\"/proc/self/nothing\")", RAW3(SYS_open, "/proc/self/nothing", O_RDONLY, 0));
    snprintf(path, sizeof path, "/proc/%d/maps", getpid());
    show("open(\"/proc/<pid>/maps\")", RAW3(SYS_open, path, O_RDONLY, 0) >= 0);
    free(malloc(100000));
    check_maps(program);

    /* Executing /proc/self/exe runs the program again (as busybox does). */
    pid_t child = probe_fork();
    if (child == 0) {
        char *arguments[] = {"renamed", "again", NULL};
        execve("/proc/self/exe", arguments, NULL);
        _exit(100 + errno);
    }
    int status;
    waitpid(child, &status, 0);
    printf("it exited %d\n", WEXITSTATUS(status));

    /* access: root may read anything and run what has an execute bit; the tree is read-only on vmgames. */
    show("access(\"hello.txt\", R_OK)", RAW2(SYS_access, "hello.txt", R_OK));
    show("access(\"hello.txt\", F_OK)", RAW2(SYS_access, "hello.txt", F_OK));
    show("access(\"hello.txt\", X_OK)", RAW2(SYS_access, "hello.txt", X_OK));
    show("access(\"script.sh\", X_OK)", RAW2(SYS_access, "script.sh", X_OK));
    show("access(\"script.sh\", R_OK | X_OK)", RAW2(SYS_access, "script.sh", R_OK | X_OK));
    show("access(\"dir\", X_OK)", RAW2(SYS_access, "dir", X_OK));
    show("access(\"dir/b\", R_OK)", RAW2(SYS_access, "dir/b", R_OK));
    show("access(\"missing\", F_OK)", RAW2(SYS_access, "missing", F_OK));
    show("access(\"dangling\", F_OK)", RAW2(SYS_access, "dangling", F_OK));
    show("access(\"hello.txt/\", F_OK)", RAW2(SYS_access, "hello.txt/", F_OK));
    show("access(\"hello.txt\", 8)", RAW2(SYS_access, "hello.txt", 8));
    show("access(\"missing\", 8)", RAW2(SYS_access, "missing", 8));
    show("access(bad pointer, F_OK)", RAW2(SYS_access, BAD_POINTER, F_OK));
    show("access(\"fifo\", W_OK)", RAW2(SYS_access, "fifo", W_OK));
    show("faccessat(dir, \"a\", R_OK)", RAW3(SYS_faccessat, directory, "a", R_OK));
    show("faccessat(99, \"a\", R_OK)", RAW3(SYS_faccessat, 99, "a", R_OK));
    show("faccessat2(AT_FDCWD, \"dangling\", F_OK, AT_SYMLINK_NOFOLLOW)",
         RAW4(SYS_faccessat2, AT_FDCWD, "dangling", F_OK, AT_SYMLINK_NOFOLLOW));
    show("faccessat2(..., AT_EACCESS)", RAW4(SYS_faccessat2, AT_FDCWD, "hello.txt", R_OK, AT_EACCESS));
    show("faccessat2(..., 0x8000)", RAW4(SYS_faccessat2, AT_FDCWD, "hello.txt", R_OK, 0x8000));
    show("faccessat2(..., mode 8, 0x8000)", RAW4(SYS_faccessat2, AT_FDCWD, "hello.txt", 8, 0x8000));
    show("faccessat2(pipe, \"\", W_OK, AT_EMPTY_PATH)", RAW4(SYS_faccessat2, fds[0], "", W_OK, AT_EMPTY_PATH));
    show("faccessat2(dir, \"\", X_OK, AT_EMPTY_PATH)", RAW4(SYS_faccessat2, directory, "", X_OK, AT_EMPTY_PATH));
    show("faccessat2(dir, \"\", X_OK, 0)", RAW4(SYS_faccessat2, directory, "", X_OK, 0));
    show("access(\"/proc/self/exe\", X_OK)", RAW2(SYS_access, "/proc/self/exe", X_OK));
    printf("@ access(\"hello.txt\", W_OK): %ld\n", RAW2(SYS_access, "hello.txt", W_OK));
    printf("@ access(\"dir\", W_OK): %ld\n", RAW2(SYS_access, "dir", W_OK));
    printf("@ access(\"link\", R_OK | W_OK): %ld\n", RAW2(SYS_access, "link", R_OK | W_OK));
    printf("@ faccessat2(\"dangling\", W_OK, AT_SYMLINK_NOFOLLOW): %ld\n",
           RAW4(SYS_faccessat2, AT_FDCWD, "dangling", W_OK, AT_SYMLINK_NOFOLLOW));
    return 0;
}
