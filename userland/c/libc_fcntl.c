/* Open files: fcntl (descriptor and status flags, F_DUPFD), lseek and
 * pread64 (and ESPIPE where there is no offset), readv, dup sharing an
 * offset, ioctl (ENOTTY off a terminal; FIOCLEX, FIONCLEX, FIONBIO), and
 * the standard descriptors as the host gave them (stdin /dev/null, stdout
 * a pipe).  Flags are printed in octal, as fcntl.h spells them. */
#include "libc_probe.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <termios.h>

static void show_flags(const char *what, int fd)
{
    long flags = RAW2(SYS_fcntl, fd, F_GETFL);
    if (flags < 0)
        show(what, flags);
    else
        printf("%s: %lo\n", what, flags);
}

static void show_read(const char *what, long result, const char *buffer)
{
    if (result < 0)
        show(what, result);
    else
        printf("%s: %ld \"%.*s\"\n", what, result, (int)result, buffer);
}

int main(void)
{
    char buffer[64];
    probe_start();
    /* A lower RLIMIT_NOFILE than any host's, so that F_DUPFD's limit is the same on both kernels. */
    struct rlimit limit = {64, 64};
    show("setrlimit(RLIMIT_NOFILE, 64)", RAW2(SYS_setrlimit, RLIMIT_NOFILE, &limit));

    int file = open("hello.txt", O_RDONLY);
    show("F_GETFD", RAW2(SYS_fcntl, file, F_GETFD));
    show("F_SETFD FD_CLOEXEC", RAW3(SYS_fcntl, file, F_SETFD, FD_CLOEXEC));
    show("F_GETFD", RAW2(SYS_fcntl, file, F_GETFD));
    show("F_SETFD 0xfe (no FD_CLOEXEC)", RAW3(SYS_fcntl, file, F_SETFD, 0xfe));
    show("F_GETFD", RAW2(SYS_fcntl, file, F_GETFD));
    show_flags("F_GETFL of hello.txt", file);
    int cloexec = open("hello.txt", O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY | 0x40000000);
    show("F_GETFD of an O_CLOEXEC open", RAW2(SYS_fcntl, cloexec, F_GETFD));
    show_flags("F_GETFL of an O_CLOEXEC|O_NONBLOCK|O_NOFOLLOW|O_NOCTTY open", cloexec);
    int directory = open("dir", O_RDONLY | O_DIRECTORY);
    show_flags("F_GETFL of an O_DIRECTORY open", directory);
    show_flags("F_GETFL of a directory opened without O_DIRECTORY", open("dir", O_RDONLY));
    show("F_SETFL O_APPEND|O_NONBLOCK|O_RDWR|O_SYNC", RAW3(SYS_fcntl, file, F_SETFL,
                                                          O_APPEND | O_NONBLOCK | O_RDWR | O_SYNC));
    show_flags("F_GETFL", file);
    show("F_SETFL 0", RAW3(SYS_fcntl, file, F_SETFL, 0));
    show_flags("F_GETFL", file);
    int fds[2];
    pipe(fds);
    show_flags("F_GETFL of a pipe's read end", fds[0]);
    show_flags("F_GETFL of a pipe's write end", fds[1]);
    show("F_SETFL O_NONBLOCK on the read end", RAW3(SYS_fcntl, fds[0], F_SETFL, O_NONBLOCK));
    show_flags("F_GETFL", fds[0]);
    show("read of the empty pipe", RAW3(SYS_read, fds[0], buffer, 1));
    show("F_SETFL 0", RAW3(SYS_fcntl, fds[0], F_SETFL, 0));
    int twin = dup(fds[0]);
    show("F_SETFL O_NONBLOCK through a dup", RAW3(SYS_fcntl, twin, F_SETFL, O_NONBLOCK));
    show_flags("F_GETFL of the original: the flags are the open file's", fds[0]);
    show("F_GETFD of the dup", RAW2(SYS_fcntl, twin, F_GETFD));

    show("F_DUPFD from 10", RAW3(SYS_fcntl, file, F_DUPFD, 10));
    show("F_DUPFD from 10 again", RAW3(SYS_fcntl, file, F_DUPFD, 10));
    long copy = show("F_DUPFD_CLOEXEC from 20", RAW3(SYS_fcntl, file, F_DUPFD_CLOEXEC, 20));
    show("F_GETFD of it", RAW2(SYS_fcntl, copy, F_GETFD));
    show("F_DUPFD from 63", RAW3(SYS_fcntl, file, F_DUPFD, 63));
    show("F_DUPFD from 63 again (the last one taken)", RAW3(SYS_fcntl, file, F_DUPFD, 63));
    show("F_DUPFD from 64 (RLIMIT_NOFILE)", RAW3(SYS_fcntl, file, F_DUPFD, 64));
    show("F_DUPFD from -1", RAW3(SYS_fcntl, file, F_DUPFD, -1));
    show("fcntl(99, F_GETFD)", RAW2(SYS_fcntl, 99, F_GETFD));
    show("fcntl(99, 9999)", RAW2(SYS_fcntl, 99, 9999));
    show("fcntl(file, 9999)", RAW2(SYS_fcntl, file, 9999));

    /* lseek on a file of 13 bytes. */
    show("lseek(5, SEEK_SET)", RAW3(SYS_lseek, file, 5, SEEK_SET));
    show_read("read 3", RAW3(SYS_read, file, buffer, 3), buffer);
    show("lseek(-2, SEEK_CUR)", RAW3(SYS_lseek, file, -2, SEEK_CUR));
    show_read("read 3", RAW3(SYS_read, file, buffer, 3), buffer);
    show("lseek(0, SEEK_END)", RAW3(SYS_lseek, file, 0, SEEK_END));
    show("lseek(-4, SEEK_END)", RAW3(SYS_lseek, file, -4, SEEK_END));
    show_read("read 10", RAW3(SYS_read, file, buffer, 10), buffer);
    show("lseek(-100, SEEK_END)", RAW3(SYS_lseek, file, -100, SEEK_END));
    show("lseek(-1, SEEK_SET)", RAW3(SYS_lseek, file, -1, SEEK_SET));
    show("lseek(0, SEEK_CUR): unchanged by the failures", RAW3(SYS_lseek, file, 0, SEEK_CUR));
    show("lseek(100, SEEK_SET): past the end", RAW3(SYS_lseek, file, 100, SEEK_SET));
    show_read("read there", RAW3(SYS_read, file, buffer, 10), buffer);
    show("lseek(1 TiB, SEEK_SET)", RAW3(SYS_lseek, file, 1L << 40, SEEK_SET));
    show("lseek(1, SEEK_CUR) from there", RAW3(SYS_lseek, file, 1, SEEK_CUR));
    show("lseek(0, SEEK_DATA)", RAW3(SYS_lseek, file, 0, SEEK_DATA));
    show("lseek(3, SEEK_HOLE)", RAW3(SYS_lseek, file, 3, SEEK_HOLE));
    show("lseek(13, SEEK_DATA)", RAW3(SYS_lseek, file, 13, SEEK_DATA));
    show("lseek(-1, SEEK_DATA)", RAW3(SYS_lseek, file, -1, SEEK_DATA));
    show("lseek(0, 5)", RAW3(SYS_lseek, file, 0, 5));
    show("lseek(pipe)", RAW3(SYS_lseek, fds[0], 0, SEEK_CUR));
    show("lseek(pipe, whence 5)", RAW3(SYS_lseek, fds[0], 0, 5));
    show("lseek(99)", RAW3(SYS_lseek, 99, 0, SEEK_SET));
    show("lseek(dir, 0, SEEK_SET)", RAW3(SYS_lseek, directory, 0, SEEK_SET));
    show("lseek(stdin: /dev/null)", RAW3(SYS_lseek, 0, 0, SEEK_CUR));
    show("lseek(stdout: a pipe)", RAW3(SYS_lseek, 1, 0, SEEK_CUR));

    /* pread64 leaves the offset alone. */
    RAW3(SYS_lseek, file, 2, SEEK_SET);
    show_read("pread(5 at 7)", RAW4(SYS_pread64, file, buffer, 5, 7), buffer);
    show("the offset after it", RAW3(SYS_lseek, file, 0, SEEK_CUR));
    show_read("pread(10 at 10)", RAW4(SYS_pread64, file, buffer, 10, 10), buffer);
    show_read("pread(10 at 100)", RAW4(SYS_pread64, file, buffer, 10, 100), buffer);
    show("pread at -1", RAW4(SYS_pread64, file, buffer, 5, -1));
    show("pread at -1 of fd 99", RAW4(SYS_pread64, 99, buffer, 5, -1));
    show("pread(pipe)", RAW4(SYS_pread64, fds[0], buffer, 5, 0));
    show("pread(pipe's write end)", RAW4(SYS_pread64, fds[1], buffer, 5, 0));
    show("pread(pipe) into a bad buffer", RAW4(SYS_pread64, fds[0], BAD_POINTER, 5, 0));
    show("pread(dir)", RAW4(SYS_pread64, directory, buffer, 5, 0));
    show("pread into a bad buffer", RAW4(SYS_pread64, file, BAD_POINTER, 5, 0));
    show("pread(99)", RAW4(SYS_pread64, 99, buffer, 5, 0));
    show("pread 0 bytes", RAW4(SYS_pread64, file, buffer, 0, 0));
    show("pread(stdout)", RAW4(SYS_pread64, 1, buffer, 5, 0));

    /* readv fills the segments in order; dup shares the offset. */
    char first[4] = {0}, second[16] = {0};
    struct iovec segments[3] = {{first, 3}, {NULL, 0}, {second, 16}};
    RAW3(SYS_lseek, file, 0, SEEK_SET);
    long got = show("readv(3 + 0 + 16)", RAW3(SYS_readv, file, segments, 3));
    printf("  \"%s\" \"%.*s\"\n", first, (int)(got - 3), second);
    struct iovec bad = {BAD_POINTER, 4};
    show("readv with a bad segment", RAW3(SYS_readv, file, &bad, 1));
    show("readv of 1025 segments", RAW3(SYS_readv, file, segments, 1025));
    show("readv(write end)", RAW3(SYS_readv, fds[1], segments, 1));
    write(fds[1], "piped", 5);
    struct iovec pieces[2] = {{first, 2}, {second, 16}};
    got = show("readv(pipe, 2 + 16)", RAW3(SYS_readv, fds[0], pieces, 2));
    printf("  \"%.2s\" \"%.*s\"\n", first, (int)(got - 2), second);
    int other = dup(file);
    RAW3(SYS_lseek, other, 7, SEEK_SET);
    show_read("read through the first fd after lseek through its dup", RAW3(SYS_read, file, buffer, 5), buffer);

    /* ioctl: nothing here is a terminal. */
    struct termios modes;
    struct winsize size;
    show("ioctl(file, TCGETS)", RAW3(SYS_ioctl, file, TCGETS, &modes));
    show("ioctl(pipe, TIOCGWINSZ)", RAW3(SYS_ioctl, fds[0], TIOCGWINSZ, &size));
    show("ioctl(dir, TCGETS)", RAW3(SYS_ioctl, directory, TCGETS, &modes));
    show("ioctl(stdin, TCGETS)", RAW3(SYS_ioctl, 0, TCGETS, &modes));
    show("ioctl(stdout, TIOCGWINSZ)", RAW3(SYS_ioctl, 1, TIOCGWINSZ, &size));
    show("ioctl(99, TCGETS)", RAW3(SYS_ioctl, 99, TCGETS, &modes));
    show("ioctl(file, 0x1234)", RAW3(SYS_ioctl, file, 0x1234, 0));
    show("isatty(0)", isatty(0));
    show("ioctl(file, FIONCLEX)", RAW3(SYS_ioctl, cloexec, FIONCLEX, 0));
    show("F_GETFD", RAW2(SYS_fcntl, cloexec, F_GETFD));
    show("ioctl(file, FIOCLEX)", RAW3(SYS_ioctl, cloexec, FIOCLEX, 0));
    show("F_GETFD", RAW2(SYS_fcntl, cloexec, F_GETFD));
    int on = 1;
    show("ioctl(pipe, FIONBIO, 1)", RAW3(SYS_ioctl, fds[0], FIONBIO, &on));
    show_flags("F_GETFL", fds[0]);
    show("ioctl(pipe, FIONBIO, bad pointer)", RAW3(SYS_ioctl, fds[0], FIONBIO, BAD_POINTER));

    /* The standard descriptors: what the host gave (stdin /dev/null, stdout and stderr pipes). */
    show_flags("F_GETFL of stdin", 0);
    show("F_GETFD of stdout", RAW2(SYS_fcntl, 1, F_GETFD));
    show_read("read(stdin)", RAW3(SYS_read, 0, buffer, 10), buffer);
    show_read("pread(stdin)", RAW4(SYS_pread64, 0, buffer, 10, 0), buffer);
    return 0;
}
