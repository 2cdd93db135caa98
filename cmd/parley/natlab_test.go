package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// natLab is a small internet inside network namespaces that the test
// creates and removes: a "public" namespace whose bridge carries
// 6.0.0.0/24 (a globally routable-looking prefix, so that libp2p's
// AutoNAT and hole punching engage; LIBP2P.md §9) with the relay on
// 6.0.0.1, and per home a router namespace doing source NAT (nftables
// masquerade; unsolicited packets to the router itself dropped, as home
// routers do) in front of a home namespace 192.168.N.0/24. No namespace
// has a link to the machine's own network: every veth pair is created
// inside the lab, and nothing is routed out of it.
//
// Each router counts what it forwards from its home: to the relay
// ("relay") and to anywhere else on the public side ("direct", which is
// the other home's router after a hole punch).
type natLab struct {
	t     *testing.T
	tag   string // suffix of every namespace name, unique per lab
	pub   string // namespace of the public side
	homes []natHome
}

// natHome is one home behind its own NAT.
type natHome struct {
	ns     string // the home's namespace, where a user node runs
	router string // the router's namespace
	wan    string // the router's public address
	lan    string // the home host's address
}

// relayIP is the relay's address on the lab's public side.
const relayIP = "6.0.0.1"

// needNATLab skips the test when the lab cannot be built (not root, no
// ip or nft), unless CI=true, where it must run and fails instead.
func needNATLab(t *testing.T) {
	t.Helper()
	var why string
	switch {
	case os.Geteuid() != 0:
		why = "network namespaces need root"
	default:
		for _, tool := range []string{"ip", "nft"} {
			if _, err := exec.LookPath(tool); err != nil {
				why = tool + " is not installed (apt-get install -y iproute2 nftables)"
			}
		}
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("the NAT test must run in CI, but %s", why)
	}
	t.Skipf("skipped: %s", why)
}

// newNATLab builds the lab with n homes; it is torn down when the test
// ends.
func newNATLab(t *testing.T, n int) *natLab {
	t.Helper()
	needNATLab(t)
	b := make([]byte, 3)
	rand.Read(b)
	l := &natLab{t: t, tag: hex.EncodeToString(b)}
	l.pub = "pl-pub-" + l.tag
	t.Cleanup(l.remove)
	l.netns(l.pub)
	l.ip(l.pub, "link set lo up")
	l.ip(l.pub, "link add br0 type bridge")
	l.ip(l.pub, "addr add "+relayIP+"/24 dev br0")
	l.ip(l.pub, "link set br0 up")
	for i := 1; i <= n; i++ {
		h := natHome{
			ns:     fmt.Sprintf("pl-home%d-%s", i, l.tag),
			router: fmt.Sprintf("pl-rtr%d-%s", i, l.tag),
			wan:    fmt.Sprintf("6.0.0.%d", 10+i),
			lan:    fmt.Sprintf("192.168.%d.2", i),
		}
		l.netns(h.router)
		l.netns(h.ns)
		// The router's uplink: a veth pair made inside the public
		// namespace, its other end moved straight into the router.
		port := fmt.Sprintf("up%d", i)
		l.ip(l.pub, fmt.Sprintf("link add %s type veth peer name wan netns %s", port, h.router))
		l.ip(l.pub, "link set "+port+" master br0")
		l.ip(l.pub, "link set "+port+" up")
		l.ip(h.router, "link set lo up")
		l.ip(h.router, "addr add "+h.wan+"/24 dev wan")
		l.ip(h.router, "link set wan up")
		// The home's link to its router.
		l.ip(h.router, "link add lan type veth peer name eth0 netns "+h.ns)
		l.ip(h.router, fmt.Sprintf("addr add 192.168.%d.1/24 dev lan", i))
		l.ip(h.router, "link set lan up")
		l.ip(h.ns, "link set lo up")
		l.ip(h.ns, "addr add "+h.lan+"/24 dev eth0")
		l.ip(h.ns, "link set eth0 up")
		l.ip(h.ns, fmt.Sprintf("route add default via 192.168.%d.1", i))
		l.run("ip", "netns", "exec", h.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
		l.nft(h.router, routerRules)
		l.homes = append(l.homes, h)
	}
	return l
}

// routerRules make a home router: source NAT for the home, nothing
// reaches the router or the home unless it answers what went out, and
// two counters of what the home sends out (to the relay, and elsewhere).
const routerRules = `
table ip nat {
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan" masquerade
	}
}
table ip filter {
	counter relay { }
	counter direct { }
	chain input {
		type filter hook input priority filter; policy drop;
		iifname "lo" accept
		iifname "lan" accept
		ct state established,related accept
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		iifname "lan" oifname "wan" ip daddr ` + relayIP + ` counter name "relay" accept
		iifname "lan" oifname "wan" counter name "direct" accept
		iifname "wan" oifname "lan" ct state established,related accept
	}
}
`

// counter reads one of a router's counters: packets the home sent.
func (l *natLab) counter(h natHome, name string) int64 {
	l.t.Helper()
	out, err := exec.Command("ip", "netns", "exec", h.router, "nft", "-j", "list", "counter", "ip", "filter", name).Output()
	if err != nil {
		l.t.Fatalf("reading counter %s of %s: %v", name, h.router, err)
	}
	var doc struct {
		Nftables []struct {
			Counter *struct {
				Packets int64 `json:"packets"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		l.t.Fatalf("parsing counter %s: %v\n%s", name, err, out)
	}
	for _, o := range doc.Nftables {
		if o.Counter != nil {
			return o.Counter.Packets
		}
	}
	l.t.Fatalf("no counter %s in %s", name, out)
	return 0
}

func (l *natLab) netns(name string) { l.run("ip", "netns", "add", name) }

func (l *natLab) ip(ns, args string) {
	l.run(append([]string{"ip", "-n", ns}, strings.Fields(args)...)...)
}

func (l *natLab) nft(ns, rules string) {
	l.t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		l.t.Fatalf("nft in %s: %v\n%s", ns, err, out)
	}
}

func (l *natLab) run(args ...string) {
	l.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// remove deletes every namespace of the lab (their veths go with them).
// Processes still inside would keep a namespace alive; the lab is
// removed after them, since cleanups run last-registered first.
func (l *natLab) remove() {
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if strings.HasSuffix(name, "-"+l.tag) {
			if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
				l.t.Errorf("removing namespace %s: %v\n%s", name, err, out)
			}
		}
	}
}

// nsHTTPClient is an HTTP client whose connections are made inside
// namespace ns, to reach a node's API on that namespace's 127.0.0.1.
// Each dial runs on its own OS thread, moved into ns and never returned
// to the Go runtime (the thread ends with the goroutine), so no other
// code runs in the lab's namespace.
func nsHTTPClient(ns string) *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		ch := make(chan result, 1)
		go func() {
			runtime.LockOSThread() // not unlocked: the thread exits with this goroutine
			f, err := os.Open("/var/run/netns/" + ns)
			if err != nil {
				ch <- result{err: err}
				return
			}
			defer f.Close()
			if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
				ch <- result{err: fmt.Errorf("setns %s: %w", ns, err)}
				return
			}
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			ch <- result{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: dial}}
}
