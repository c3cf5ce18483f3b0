/*
 * rusage: runs argv[1..] as its child, waits for it and writes the child's
 * wait4 ru_maxrss (KiB) as a decimal line to fd 3, then exits with the
 * child's status (128+N if signal N killed it). SIGINT, SIGTERM and SIGHUP
 * are passed on to the child.
 *
 * Why: a Go program starts commands with vfork+exec, and exec records the
 * peak RSS of the address space it replaces -- the Go program's own -- in
 * the new process's maxrss. Through this small launcher the floor is the
 * launcher's few hundred KiB instead of the benchmark's peak.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile pid_t child;

static void forward(int sig)
{
	if (child > 0)
		kill(child, sig);
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	struct rusage ru;
	int status;

	if (argc < 2) {
		fprintf(stderr, "usage: rusage COMMAND [ARG...]  (maxrss KiB goes to fd 3)\n");
		return 2;
	}
	/* Only this process reports on fd 3; the command does not inherit it. */
	fcntl(3, F_SETFD, FD_CLOEXEC);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = forward;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	child = fork();
	if (child < 0) {
		perror("rusage: fork");
		return 126;
	}
	if (child == 0) {
		execvp(argv[1], argv + 1);
		fprintf(stderr, "rusage: exec %s: %s\n", argv[1], strerror(errno));
		_exit(127);
	}
	while (wait4(child, &status, 0, &ru) < 0) {
		if (errno != EINTR) {
			perror("rusage: wait4");
			return 126;
		}
	}
	dprintf(3, "%ld\n", ru.ru_maxrss);
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + WTERMSIG(status);
}
