/* fork, vfork and posix_spawn as glibc and musl make them (clone, clone3), and the wait statuses. */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;
static int shared_with_vfork_child;

static void report(const char *what, pid_t pid, int status) {
    if (WIFEXITED(status))
        printf("%s: exited %d (pid %s)\n", what, WEXITSTATUS(status), pid > 0 ? "positive" : "bad");
    else if (WIFSIGNALED(status))
        printf("%s: killed by signal %d\n", what, WTERMSIG(status));
}

int main(int argc, char **argv) {
    if (argc > 1)                        /* the spawned copy of ourselves: silent, its output would race */
        return 42;
    setvbuf(stdout, NULL, _IONBF, 0);
    int status;
    int on_stack = 1;
    pid_t pid = fork();
    if (pid == 0) {
        on_stack = 2;
        printf("fork child: on_stack %d\n", on_stack);
        exit(7);
    }
    waitpid(pid, &status, 0);
    report("fork", pid, status);
    printf("fork parent: on_stack still %d\n", on_stack);

    pid = vfork();
    if (pid == 0) {
        shared_with_vfork_child = 5;     /* the parent sleeps meanwhile and sees this: one address space */
        _exit(9);
    }
    printf("vfork parent resumed: child wrote %d\n", shared_with_vfork_child);
    waitpid(pid, &status, 0);
    report("vfork", pid, status);

    char *child_argv[] = {argv[0], "posix_spawn", NULL};
    int error = posix_spawn(&pid, argv[0], NULL, NULL, child_argv, environ);
    printf("posix_spawn: %s\n", error ? strerror(error) : "ok");
    waitpid(pid, &status, 0);
    report("posix_spawn", pid, status);

    pid = fork();
    if (pid == 0)
        abort();
    waitpid(pid, &status, 0);
    report("abort", pid, status);

    printf("no more children: %s\n", waitpid(-1, &status, 0) == -1 ? "ECHILD" : "?");
    return 3;
}
