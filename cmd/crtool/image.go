package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/crtool/crtool/internal/ociimage"
)

func imageCommand() *cli.Command {
	return withUsageErrors(&cli.Command{
		Name:      "image",
		Usage:     "write a checkpoint archive as an OCI image archive for Podman, CRI-O and Kubernetes",
		ArgsUsage: " ",
		Description: `Writes the checkpoint archive (-f) as an OCI image archive (-o): the tar of
an OCI image layout holding one uncompressed layer with the archive's files,
annotated as Podman's "container checkpoint --create-image" annotates its
checkpoint images (io.podman.annotations.checkpoint.*, and the container
name CRI-O looks for). "podman load" reads it; "podman container restore
IMAGE" then restores the container, and a registry can carry it to a
Kubernetes node whose CRI-O restores it. "crtool restore -f FILE" restores
the image file itself.

Podman restores a checkpoint image only under the OCI runtime recorded in
it (config.dump's, else crtool.json's); --runtime overrides it.

Examples:
   crtool image -f web.tar.gz -o web-image.tar --tag localhost/web-checkpoint
   podman load -i web-image.tar && podman container restore localhost/web-checkpoint`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "checkpoint archive (\"-\": stdin)"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "image archive to write (\"-\": stdout)"},
			&cli.StringFlag{Name: "tag", Aliases: []string{"t"}, Usage: "image name, NAME[:TAG] (\"localhost/\" and \":latest\" are added when missing)"},
			&cli.StringFlag{Name: "runtime", Usage: "OCI runtime the restoring engine must use (default: the archive's)"},
			workDirFlag,
			verboseFlag,
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError{fmt.Errorf("image takes no arguments (got %q): use -f ARCHIVE -o FILE --tag NAME", c.Args().First())}
			}
			for _, f := range []string{"file", "output", "tag"} {
				if c.String(f) == "" {
					return usageError{fmt.Errorf("missing --%s (see crtool image --help)", f)}
				}
			}
			img, err := ociimage.WriteFile(c.Context, c.String("output"), c.String("file"), ociimage.WriteOptions{
				Tag:     c.String("tag"),
				Runtime: c.String("runtime"),
				TempDir: c.String("work-dir"),
			})
			if err != nil {
				return err
			}
			if log := logger(c); log != nil {
				log("layer %s (%d bytes), manifest %s", img.Layer.Digest, img.Layer.Size, img.Manifest.Digest)
			}
			fmt.Fprintf(c.App.ErrWriter, "crtool: wrote image %s (%s) to %s\n", img.Name, img.Manifest.Digest, c.String("output"))
			return nil
		},
	})
}
