"""Linux errno values (asm-generic/errno-base.h), returned negated in rax."""

EPERM = 1
ENOENT = 2
ESRCH = 3
EINTR = 4
EIO = 5
ENXIO = 6
E2BIG = 7
ENOEXEC = 8
EBADF = 9
ECHILD = 10
EAGAIN = 11
ENOMEM = 12
EACCES = 13
EFAULT = 14
EEXIST = 17
ENODEV = 19
ENOTDIR = 20
EISDIR = 21
EINVAL = 22
EMFILE = 24
ENOTTY = 25
ENOSPC = 28
ESPIPE = 29
EROFS = 30
EPIPE = 32
ERANGE = 34
ENAMETOOLONG = 36
ENOSYS = 38
ELOOP = 40
EOVERFLOW = 75
EOPNOTSUPP = 95
ETIMEDOUT = 110


class SyscallError(Exception):
    """Raised inside a syscall to return -errno to the caller."""

    def __init__(self, errno: int) -> None:
        super().__init__(errno)
        self.errno = errno
