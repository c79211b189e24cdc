// The pause program of the test node's pod sandboxes (hack/build-images.sh): no dependencies.
module ai-models/hack/pause

go 1.24.0
