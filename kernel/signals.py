"""Signal numbers (Linux x86-64) and their names."""

SIGHUP = 1
SIGINT = 2
SIGQUIT = 3
SIGILL = 4
SIGTRAP = 5
SIGABRT = 6
SIGBUS = 7
SIGFPE = 8
SIGKILL = 9
SIGSEGV = 11
SIGPIPE = 13
SIGTERM = 15
SIGCHLD = 17
SIGCONT = 18
SIGSTOP = 19
SIGTSTP = 20
SIGTTIN = 21
SIGTTOU = 22
NSIG = 64          # signals 1..64: 32 and up are the real-time ones

NAMES = {SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGILL: "SIGILL", SIGTRAP: "SIGTRAP",
         SIGABRT: "SIGABRT", SIGBUS: "SIGBUS", SIGFPE: "SIGFPE", SIGKILL: "SIGKILL", SIGSEGV: "SIGSEGV",
         SIGPIPE: "SIGPIPE", SIGTERM: "SIGTERM", 10: "SIGUSR1", 12: "SIGUSR2", 14: "SIGALRM", SIGCHLD: "SIGCHLD",
         SIGCONT: "SIGCONT", SIGSTOP: "SIGSTOP", SIGTSTP: "SIGTSTP", SIGTTIN: "SIGTTIN", SIGTTOU: "SIGTTOU"}


# Signals whose default action is to do nothing (signal(7)); every other one terminates.
IGNORED_BY_DEFAULT = frozenset({17, 18, 23, 28})   # SIGCHLD, SIGCONT, SIGURG, SIGWINCH


def name(signal: int) -> str:
    return NAMES.get(signal, f"signal {signal}")
