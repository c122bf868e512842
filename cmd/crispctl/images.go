package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/crisp-cri/crisp/cri/adminpb"
)

func newImageCommand(g *globals) *cobra.Command {
	img := &cobra.Command{Use: "image", Short: "Load and list images in crispd's image store"}
	var tag string
	load := &cobra.Command{
		Use:   "load PATH",
		Short: "Import an OCI archive, OCI layout directory or docker-archive tarball",
		Long: `Import images for a node without a registry. PATH is on this node: an OCI
image layout directory, an OCI archive (a tar of one, as skopeo's oci-archive:
writes) or a docker-archive tarball (as docker save writes). Each image keeps
the name the archive gives it; --tag names the archive's only image instead,
and is needed when the archive names none. crispd must be running.`,
		Example: `  crispctl image load ./busybox.oci.tar
  crispctl image load --tag registry.example/app:1.0 ./app-layout/`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, client, done, err := g.admin(cmd)
			if err != nil {
				return err
			}
			defer done()
			resp, err := client.LoadImage(ctx, &adminpb.LoadImageRequest{Path: absPath(args[0]), Tag: tag})
			if err != nil {
				return fmt.Errorf("load %s: %w", args[0], err)
			}
			for _, im := range resp.Images {
				fmt.Fprintf(cmd.OutOrStdout(), "loaded %s %s\n", strings.Join(im.RepoTags, ","), im.Id)
			}
			return nil
		},
	}
	load.Flags().StringVar(&tag, "tag", "", "name for the archive's only image (repository:tag)")
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List the images in the store",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, client, done, err := g.admin(cmd)
			if err != nil {
				return err
			}
			defer done()
			resp, err := client.ListImages(ctx, &adminpb.ListImagesRequest{})
			if err != nil {
				return fmt.Errorf("list images: %w", err)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "IMAGE\tID\tDIGEST\tSIZE\tCREATED")
			for _, im := range resp.Images {
				names := im.RepoTags
				if len(names) == 0 {
					names = []string{"<none>"}
				}
				digest := "<none>"
				if len(im.RepoDigests) > 0 {
					_, digest, _ = strings.Cut(im.RepoDigests[0], "@")
				}
				for _, n := range names {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n, shortID(im.Id), digest, humanBytes(im.Size),
						time.Unix(0, im.CreatedUnixNano).UTC().Format(time.RFC3339))
				}
			}
			return tw.Flush()
		},
	}
	img.AddCommand(load, ls)
	return img
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 13 {
		return id[:13]
	}
	return id
}

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
