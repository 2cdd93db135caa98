package main

import (
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
)

// registerDiskMetrics exports the free and total bytes of the file system
// that holds dir (a node's or relay's data directory), read when scraped,
// so that an alert can see the disk filling before badger fails.
func registerDiskMetrics(reg prometheus.Registerer, dir string) {
	statfs := func(f func(s *syscall.Statfs_t) float64) func() float64 {
		return func() float64 {
			var s syscall.Statfs_t
			if err := syscall.Statfs(dir, &s); err != nil {
				return 0
			}
			return f(&s)
		}
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "parley", Subsystem: "disk", Name: "free_bytes",
			Help: "Bytes available to parley on the file system of the data directory.",
		}, statfs(func(s *syscall.Statfs_t) float64 { return float64(s.Bavail) * float64(s.Bsize) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "parley", Subsystem: "disk", Name: "size_bytes",
			Help: "Size of the file system of the data directory.",
		}, statfs(func(s *syscall.Statfs_t) float64 { return float64(s.Blocks) * float64(s.Bsize) })),
	)
}
