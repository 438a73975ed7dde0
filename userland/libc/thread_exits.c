/* How threads end a process: exit() from another thread ends them all; after the main thread leaves with
   pthread_exit, the process lives on until its last thread returns. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void *last_one(void *arg) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
    static const char said[] = "the last thread runs after main's pthread_exit\n";
    write(1, said, sizeof said - 1);
    return arg;                          /* the process ends with its last thread: status 0 */
}

static void *quitter(void *arg) {
    exit(5);                             /* exit_group: every thread goes */
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    pid_t pid = fork();
    if (pid == 0) {
        pthread_t t;
        pthread_create(&t, NULL, quitter, NULL);
        pthread_join(t, NULL);
        printf("not reached\n");
        return 1;
    }
    int status;
    waitpid(pid, &status, 0);
    printf("child whose thread called exit(5): exited %d\n", WEXITSTATUS(status));
    pthread_t t;
    pthread_create(&t, NULL, last_one, NULL);
    pthread_exit(NULL);
}
