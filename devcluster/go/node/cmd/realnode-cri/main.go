// realnode-cri: the two CRI calls devcluster's real node needs that containerd's ctr lacks.
//
//	realnode-cri -endpoint unix:///path/containerd.sock ready
//	    exit 0 once the runtime reports RuntimeReady and NetworkReady
//	realnode-cri -endpoint unix:///path/containerd.sock remove-all
//	    stop and remove every pod sandbox (containers, network via CNI DEL, netns, shm mounts)
//
// Stopping the kubelet leaves its pods running under containerd's shims; removing them through
// the CRI, as `crictl rmp -fa` does, is the only way that also releases their network.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func main() {
	endpoint := flag.String("endpoint", "", "CRI endpoint, unix:///path/to/containerd.sock")
	timeout := flag.Duration("timeout", 60*time.Second, "overall deadline")
	flag.Parse()
	if *endpoint == "" || flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: realnode-cri -endpoint unix:///path ready|remove-all")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	conn, err := grpc.NewClient(*endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fail(err)
	}
	defer conn.Close()
	runtime := runtimeapi.NewRuntimeServiceClient(conn)
	switch flag.Arg(0) {
	case "ready":
		err = ready(ctx, runtime)
	case "remove-all":
		err = removeAll(ctx, runtime)
	default:
		err = fmt.Errorf("unknown command %q", flag.Arg(0))
	}
	if err != nil {
		fail(err)
	}
}

func ready(ctx context.Context, runtime runtimeapi.RuntimeServiceClient) error {
	status, err := runtime.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		return err
	}
	for _, condition := range status.GetStatus().GetConditions() {
		if !condition.GetStatus() {
			return fmt.Errorf("%s: %s %s", condition.GetType(), condition.GetReason(), condition.GetMessage())
		}
	}
	return nil
}

func removeAll(ctx context.Context, runtime runtimeapi.RuntimeServiceClient) error {
	sandboxes, err := runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return err
	}
	var failed error
	for _, sandbox := range sandboxes.GetItems() {
		id := sandbox.GetId()
		if _, err := runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
			failed = fmt.Errorf("stop %s: %w", id, err)
			continue
		}
		if _, err := runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			failed = fmt.Errorf("remove %s: %w", id, err)
		}
	}
	return failed
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "realnode-cri:", err)
	os.Exit(1)
}
