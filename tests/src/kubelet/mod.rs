//! The sandbox's kubelet: registers a Node and runs each Pod's containers as local processes (issue 5).
