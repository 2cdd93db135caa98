package node

import (
	"testing"
	"time"

	pp "github.com/parley-chat/parley/protocol"
)

// BenchmarkStrictThroughput is BenchmarkThroughput with both nodes in
// --strict-rsa-signatures mode: every session message is signed with
// the sender's RSA identity key (a private-key operation) and verified
// with it (a public-key one). It reports messages/s and the CPU crypto
// bound of this run, P/(sign + verify) with P = GOMAXPROCS and sign and
// verify timed alone in this process's CPU time (medians; the rest of a
// session message's cryptography, AES-GCM and a ratchet step, is left
// out: it is small beside them), with cpu-ratio, cpu-cores,
// others-cores, cpu-ms/msg and crypto-share as there, and par-ratio to
// the rate at which P goroutines sign and verify as many alone, just
// before and just after the run (cryptoBracket).
func BenchmarkStrictThroughput(b *testing.B) {
	const senders = 8
	a, _, _, bID, events := benchPairWith(b, true, true)
	sign, verify := strictCost(b, a)
	s, _ := a.running()
	key, msg := s.keys.identity(), make([]byte, 200)
	par := bracketCrypto(b, b.N, func() error {
		sig, err := key.Sign(pp.LabelSessSig, msg)
		if err == nil {
			err = key.Public().Verify(pp.LabelSessSig, msg, sig)
		}
		return err
	})
	b.ResetTimer()
	elapsed, use := sendBurst(b, a, bID, events, senders)
	b.StopTimer()
	rate := float64(b.N) / elapsed.Seconds()
	b.ReportMetric(rate, "msgs/s")
	b.ReportMetric(durationMs(sign), "sign-cpu-ms")
	b.ReportMetric(durationMs(verify), "verify-cpu-ms")
	reportCPU(b, use, b.N)
	reportCryptoCPU(b, use, b.N, rate, sign+verify)
	par.report(b, rate)
}

// strictCost is the CPU time of one RSA-PSS signature with n's identity
// key and of its verification, each timed alone in this run (the median
// of 30).
func strictCost(b *testing.B, n *Node) (sign, verify time.Duration) {
	b.Helper()
	s, _ := n.running()
	key := s.keys.identity()
	msg := make([]byte, 200)
	const rounds = 30
	signs, verifies := make([]time.Duration, rounds), make([]time.Duration, rounds)
	for i := range rounds {
		cpu := processCPU(b)
		sig, err := key.Sign(pp.LabelSessSig, msg)
		signs[i] = processCPU(b) - cpu
		if err != nil {
			b.Fatal(err)
		}
		cpu = processCPU(b)
		err = key.Public().Verify(pp.LabelSessSig, msg, sig)
		verifies[i] = processCPU(b) - cpu
		if err != nil {
			b.Fatal(err)
		}
	}
	return percentile(signs, 50), percentile(verifies, 50)
}
