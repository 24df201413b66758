package pipeline

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"text/tabwriter"

	"golang.org/x/term"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
)

// offTerminalScreen is "a screenful" when stdout is not a terminal.
const offTerminalScreen = 60

// showDiff prints the diff. One longer than a screen (or --diff=summary)
// is preceded by a table of what changes, so a 5,000-line install can be
// judged at a glance; on a terminal a long diff goes through the user's
// pager, as git does. KUBECTL_EXTERNAL_DIFF runs as before.
func (r *Runner) showDiff(plan *Plan, diffs []*ObjectDiff) error {
	e := r.C.Engine
	out := r.C.Streams.Out
	dp := &DiffPrinter{Out: out, Color: cli.Color(out), ShowSecrets: e.ShowSecrets, External: os.Getenv("KUBECTL_EXTERNAL_DIFF")}
	if dp.External != "" {
		if e.Diff == "full" {
			return dp.Print(diffs)
		}
		dp.External = "" // the table counts our own diff; no program to run
	}
	var buf bytes.Buffer
	dp.Out = &buf
	if err := dp.Print(diffs); err != nil {
		return err
	}
	screen, tty := offTerminalScreen, false
	if f, ok := out.(*os.File); ok && cli.IsTerminal(out) {
		tty = true
		if _, rows, err := term.GetSize(int(f.Fd())); err == nil && rows > 0 {
			screen = rows
		}
	}
	long := bytes.Count(buf.Bytes(), []byte("\n")) > screen
	if long || e.Diff == "summary" {
		changeTable(out, plan, diffs, dp.lines)
	}
	if e.Diff == "summary" {
		return nil
	}
	if long && tty {
		if err := page(buf.Bytes(), out, r.C.Streams.ErrOut); err == nil {
			return nil
		}
	}
	_, err := out.Write(buf.Bytes())
	return err
}

// changeTable lists the changed objects per phase with their diff size.
func changeTable(w io.Writer, plan *Plan, diffs []*ObjectDiff, lines map[string][2]int) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PHASE\tOBJECT\tACTION\tLINES")
	for _, d := range diffs {
		if !d.Changed() {
			continue
		}
		phase := ""
		if d.phase < len(plan.Phases) {
			phase = plan.Phases[d.phase].Name
		}
		n := lines[d.Ref]
		fmt.Fprintf(tw, "%s\t%s\t%s\t+%d -%d\n", phase, d.Ref, d.Action(), n[0], n[1])
	}
	tw.Flush()
}

// page runs $KUBECTL_MESH_PAGER, $PAGER or less (-FRX: quit if one screen,
// keep colors, leave the text on screen) with text on its input.
func page(text []byte, out, errOut io.Writer) error {
	pager := os.Getenv("KUBECTL_MESH_PAGER")
	if pager == "" {
		pager = os.Getenv("PAGER")
	}
	if pager == "" {
		pager = "less -FRX"
	}
	args := strings.Fields(pager)
	if len(args) == 0 {
		return fmt.Errorf("empty pager")
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(text), out, errOut
	return cmd.Run()
}
