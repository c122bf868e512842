package cri

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/runtimes/storage"
)

func TestImageService(t *testing.T) {
	n := newTestNode(t)
	ctx := context.Background()
	ref := testImage.RepoTags[0]
	spec := func(ref string) *runtimeapi.ImageSpec { return &runtimeapi.ImageSpec{Image: ref} }

	pulled, err := n.srv.PullImage(ctx, &runtimeapi.PullImageRequest{Image: spec(ref)})
	if err != nil || pulled.ImageRef != "sha256:"+testImage.ID {
		t.Errorf("PullImage() = %v, %v; want the image id", pulled, err)
	}
	if _, err := n.srv.PullImage(ctx, &runtimeapi.PullImageRequest{Image: spec("nginx")}); codeOfErr(err) != codes.NotFound {
		t.Errorf("PullImage(unknown) = %v, want NotFound", err)
	}
	if _, err := n.srv.PullImage(ctx, &runtimeapi.PullImageRequest{Image: spec("")}); codeOfErr(err) != codes.InvalidArgument {
		t.Errorf("PullImage(\"\") = %v, want InvalidArgument", err)
	}

	st, err := n.srv.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: spec(ref), Verbose: true})
	if err != nil || st.Image.GetId() != "sha256:"+testImage.ID || !strings.Contains(st.Info["info"], `"repoTags":["`+ref+`"]`) {
		t.Errorf("ImageStatus() = %v, %v", st, err)
	}
	st, err = n.srv.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: spec("nginx")})
	if err != nil || st.Image != nil {
		t.Errorf("ImageStatus(unknown) = %v, %v; want an empty answer", st, err)
	}

	list, err := n.srv.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil || len(list.Images) != 1 {
		t.Errorf("ListImages() = %v, %v", list, err)
	}
	list, err = n.srv.ListImages(ctx, &runtimeapi.ListImagesRequest{Filter: &runtimeapi.ImageFilter{Image: spec("nginx")}})
	if err != nil || len(list.Images) != 0 {
		t.Errorf("ListImages(unknown) = %v, %v; want none", list, err)
	}

	fs, err := n.srv.ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{})
	if err != nil || fs.ImageFilesystems[0].UsedBytes.Value != 1<<20 || fs.ContainerFilesystems[0].FsId.Mountpoint != n.images.root {
		t.Errorf("ImageFsInfo() = %v, %v", fs, err)
	}

	// An image in use cannot go; once the container is gone it can, and
	// removing it again succeeds.
	podCfg := n.podConfig("web")
	podID := n.runPod(t, podCfg, "")
	id := n.createCtr(t, podID, podCfg, ctrConfig("app"))
	if _, err := n.srv.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: spec(ref)}); codeOfErr(err) != codes.FailedPrecondition {
		t.Errorf("RemoveImage(in use) = %v, want FailedPrecondition", err)
	}
	n.srv.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id})
	for i := range 2 {
		if _, err := n.srv.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: spec(ref)}); err != nil {
			t.Errorf("RemoveImage() #%d = %v", i+1, err)
		}
	}
}

// The store's pinned flag reaches ListImages and ImageStatus, verbose
// info included, and only for the images the store pins.
func TestImagesPinned(t *testing.T) {
	n := newTestNode(t)
	ctx := context.Background()
	pause := storage.Image{ID: strings.Repeat("cd", 32), RepoTags: []string{"registry.k8s.io/pause:3.10"}, Pinned: true,
		Config: testImage.Config}
	n.images.images = append(n.images.images, pause)

	list, err := n.srv.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, img := range list.Images {
		got[img.Id] = img.Pinned
	}
	want := map[string]bool{"sha256:" + testImage.ID: false, "sha256:" + pause.ID: true}
	if len(got) != len(want) || got["sha256:"+testImage.ID] || !got["sha256:"+pause.ID] {
		t.Errorf("ListImages() pinned = %v, want %v", got, want)
	}
	for _, img := range []storage.Image{testImage, pause} {
		st, err := n.srv.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: img.RepoTags[0]}, Verbose: true})
		wantInfo := fmt.Sprintf(`"pinned":%t`, img.Pinned)
		if err != nil || st.Image.GetPinned() != img.Pinned || !strings.Contains(st.Info["info"], wantInfo) {
			t.Errorf("ImageStatus(%s) = pinned %v info %s, %v; want pinned %v", img.RepoTags[0], st.GetImage().GetPinned(), st.GetInfo()["info"], err, img.Pinned)
		}
	}
}

// A user in the image's config is reported as a uid when it is one, else
// as a name.
func TestToCRIImageUser(t *testing.T) {
	tests := []struct {
		user     string
		uid      *int64
		username string
	}{
		{"", nil, ""},
		{"1000", ptr(int64(1000)), ""},
		{"1000:1000", ptr(int64(1000)), ""},
		{"nginx", nil, "nginx"},
		{"nginx:nginx", nil, "nginx"},
	}
	for _, tt := range tests {
		img := testImage
		cfg := *img.Config
		cfg.Config.User = tt.user
		img.Config = &cfg
		got := toCRIImage(img)
		if (got.Uid == nil) != (tt.uid == nil) || got.Uid != nil && got.Uid.Value != *tt.uid || got.Username != tt.username {
			t.Errorf("toCRIImage(user %q) = uid %v name %q, want %v %q", tt.user, got.Uid, got.Username, tt.uid, tt.username)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestAuthFrom(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	tests := []struct {
		name    string
		in      *runtimeapi.AuthConfig
		want    *storage.Auth
		wantErr bool
	}{
		{"none", nil, nil, false},
		{"empty", &runtimeapi.AuthConfig{}, nil, false},
		{"user and password", &runtimeapi.AuthConfig{Username: "u", Password: "p"}, &storage.Auth{Username: "u", Password: "p"}, false},
		{"auth", &runtimeapi.AuthConfig{Auth: b64("u:p:q")}, &storage.Auth{Username: "u", Password: "p:q"}, false},
		{"token", &runtimeapi.AuthConfig{IdentityToken: "t"}, &storage.Auth{IdentityToken: "t"}, false},
		{"not base64", &runtimeapi.AuthConfig{Auth: "!!"}, nil, true},
		{"no colon", &runtimeapi.AuthConfig{Auth: b64("user")}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := authFrom(tt.in)
			if (err != nil) != tt.wantErr || err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("authFrom() = %v, want error %v (invalid)", err, tt.wantErr)
			}
			if (got == nil) != (tt.want == nil) || got != nil && *got != *tt.want {
				t.Errorf("authFrom() = %+v, want %+v", got, tt.want)
			}
		})
	}
}
