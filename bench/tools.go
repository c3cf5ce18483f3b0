package bench

import (
	"context"
	"time"
)

// Tool starts workload containers that one checkpoint/restore tool
// handles.
type Tool interface {
	Name() string // ToolCrtool, ToolRunc or ToolPodman
	// Start runs w in a new container and returns once it answers.
	Start(ctx context.Context, w Workload) (Container, error)
	// Close removes what the tool set up for all containers (an image, a
	// network).
	Close() error
}

// Container is one running workload.
type Container interface {
	// Dump checkpoints the container into an archive of format and stops
	// it; the metrics are the dump_* keys and archive_bytes.
	Dump(ctx context.Context, format string) (Metrics, error)
	// Restore restores the last archive and returns when the tool has
	// returned, with the restore_* keys. Whatever the benchmark needs
	// afterwards (finding the namespace to dial) is not in the wall time.
	Restore(ctx context.Context) (Metrics, error)
	// Answer waits until the restored container answers and returns how
	// long that took after Restore returned.
	Answer(ctx context.Context) (time.Duration, error)
	// Cleanup removes the container and everything it created, restored
	// or not; it runs also after a cancelled context.
	Cleanup() []error
}

// answerTimeout bounds the wait for a restored container's first answer.
const answerTimeout = 30 * time.Second
