package mailer

import (
	"bytes"
	"context"
	"errors"
	"net/textproto"
	"slices"
	"time"
)

// This file is the mail transaction itself, written on the connection that
// go-mail's client set up (greeting, EHLO, STARTTLS, AUTH): go-mail sends
// one command and waits for its reply, and copies the message through a
// byte-at-a-time dot-stuffing writer, both too slow for bulk sending.
//
// When the relay offers PIPELINING (RFC 2920), MAIL FROM, RCPT TO and DATA
// (after an RSET when the previous transaction failed) go out in one write,
// and their replies are read in order; the message follows the 354 in a
// second write. Without PIPELINING the same commands go one at a time.

// transact runs one mail transaction for data, the encoded message as it
// goes after DATA: dot-stuffed, ending with the lone dot. keep
// reports whether the connection is in a known state and may serve the
// next message. unanswered reports that the relay answered nothing of this
// transaction before the connection failed (a reused connection the relay
// had closed): the message was certainly not taken, and may be sent again
// on a new connection at once.
//
// opened reports that MAIL FROM, RCPT TO and DATA of this transaction
// already went out, with the previous message's final dot (a Chain): only
// their replies are read. next, when not nil and the relay pipelines, is
// asked for the envelope of the message to open after this one; chained
// reports that its commands went out with this message's dot, and that the
// connection (when keep) now waits for that message.
func (sc *smtpConn) transact(ctx context.Context, timeout time.Duration, from, to string, data []byte,
	opened bool, next func() (from, to string, ok bool)) (keep, unanswered, chained bool, err error) {
	stop := sc.watch(ctx)
	defer func() {
		// If the watcher fired, the deadline may already be in the
		// past: the connection cannot be trusted any more.
		if !stop() {
			keep = false
		}
	}()

	cmds := sc.cmds[:0]
	var seq [4]command
	n := 0
	add := func(stage string, expect int, parts ...string) {
		start := len(cmds)
		for _, p := range parts {
			cmds = append(cmds, p...)
		}
		cmds = append(cmds, "\r\n"...)
		seq[n] = command{stage: stage, expect: expect, start: start, end: len(cmds)}
		n++
	}
	if sc.dirty && !opened {
		// The previous transaction did not end with the relay's 250 to
		// the message: start clean. (A chained transaction follows a
		// final reply, which ends any transaction.)
		add(stageReset, 250, "RSET")
	}
	add(StageMail, 250, "MAIL FROM:<", from, ">")
	add(StageRcpt, 25, "RCPT TO:<", to, ">") // 250 or 251
	add(StageData, 354, "DATA")
	sc.cmds = cmds
	sc.dirty = true // until the relay takes the message

	tp := sc.c.Text
	// Only the first failure is reported; the replies after it are read
	// to keep the conversation in step.
	var first *SendError
	answered := false // the relay answered a command of this transaction
	dataTaken := false
	// reply reads the answer to c; ok is false when the connection is
	// lost or closing (421), and nothing more can be read.
	reply := func(c command) (ok bool) {
		_, _, err := tp.ReadResponse(c.expect)
		var te *textproto.Error
		switch {
		case err == nil:
			answered = true
			dataTaken = c.stage == StageData
			return true
		case errors.As(err, &te):
			// A 421 before any other reply is a relay that was closing
			// the connection anyway (an idle timeout): unanswered.
			answered = answered || te.Code != 421
			stage := c.stage
			if stage == stageReset {
				stage = StageMail
			}
			if first == nil {
				first = classify(ctx, stage, err)
			}
			// A relay that refuses RSET is in no state we know.
			return te.Code != 421 && c.stage != stageReset
		default:
			if first == nil {
				first = classify(ctx, c.stage, err)
			}
			return false
		}
	}

	if err := sc.arm(ctx, timeout); err != nil {
		return false, true, false, classify(ctx, seq[0].stage, err)
	}
	if sc.pipelining {
		if !opened {
			if err := sc.write(cmds); err != nil {
				return false, true, false, classify(ctx, seq[0].stage, err)
			}
		}
		for _, c := range seq[:n] {
			if !reply(c) {
				return false, !answered, false, first
			}
		}
	} else {
		for i, c := range seq[:n] {
			if i > 0 {
				if err := sc.arm(ctx, timeout); err != nil {
					return false, false, false, classify(ctx, c.stage, err)
				}
			}
			if err := sc.write(cmds[c.start:c.end]); err != nil {
				return false, !answered, false, classify(ctx, c.stage, err)
			}
			if !reply(c) {
				return false, !answered, false, first
			}
			if first != nil {
				return true, false, false, first
			}
		}
	}
	if first != nil {
		if dataTaken {
			// RFC 2920 section 3.1: the relay took DATA although a
			// command before it failed (no valid recipient). End the
			// empty message with a lone dot; the relay refuses it.
			if err := sc.arm(ctx, timeout); err != nil {
				return false, false, false, first
			}
			if err := sc.write([]byte(".\r\n")); err != nil {
				return false, false, false, first
			}
			if _, _, err := tp.ReadResponse(250); err != nil {
				var te *textproto.Error
				if !errors.As(err, &te) || te.Code == 421 {
					return false, false, false, first
				}
			}
		}
		return true, false, false, first
	}

	if err := sc.arm(ctx, timeout); err != nil {
		return false, false, false, classify(ctx, StageData, err)
	}
	out := data
	if g := DataGateFrom(ctx); g != nil && !isClosed(g.Ready) {
		// The message goes out whole once the gate opens: written before,
		// all but its lone dot, it cost a write and a wake-up of the relay
		// more for every message, and the transfer it overlapped with the
		// wait is a small part of a message's time at any bandwidth that
		// would not limit the send anyway.
		if g.Waiting != nil {
			g.Waiting()
		}
		select {
		case <-g.Ready:
		case <-ctx.Done():
			// After DATA's 354: the connection is closed, and the relay
			// drops the message it has not received.
			return false, false, false, classify(ctx, StageData, context.Cause(ctx))
		}
		if err := sc.arm(ctx, timeout); err != nil {
			return false, false, false, classify(ctx, StageData, err)
		}
	}
	if next != nil && sc.pipelining && ctx.Err() == nil {
		// The next message's transaction goes out with this one's dot
		// (RFC 2920: a group may start with the end of the content).
		if nf, nt, ok := next(); ok {
			out = append(out, "MAIL FROM:<"...)
			out = append(out, nf...)
			out = append(out, ">\r\nRCPT TO:<"...)
			out = append(out, nt...)
			out = append(out, ">\r\nDATA\r\n"...)
			chained = true
		}
	}
	if err := sc.write(out); err != nil {
		return false, false, false, classify(ctx, StageData, err)
	}
	if _, _, err := tp.ReadResponse(250); err != nil {
		se := classify(ctx, StageData, err)
		// The final reply ends the transaction, taken or not: a chained
		// one that follows it stands.
		return replied(se), false, chained, se
	}
	sc.dirty = false
	return true, false, chained, nil
}

// DataGate holds back a message's data: SMTPTransport runs the commands
// up to DATA's 354 and waits for Ready to be closed before it writes the
// message, so that the relay cannot take the message before then.
// The delivery engine uses it to let a worker send its next message while
// the previous one's settle commits, and still have the relay take the
// next one only once the previous one is recorded.
type DataGate struct {
	Ready <-chan struct{} // closed when the message may be taken
	// Waiting, if set, is called when Send has to wait for Ready (it was
	// not closed when the message was written).
	Waiting func()
}

type dataGateKey struct{}

// WithDataGate returns ctx carrying g for a Send: transports that honour it
// (DataGater) wait for g.Ready before the relay may take the message. If
// ctx ends first, the send fails as a temporary error at StageData and the
// relay took nothing.
func WithDataGate(ctx context.Context, g *DataGate) context.Context {
	return context.WithValue(ctx, dataGateKey{}, g)
}

// DataGateFrom returns the DataGate WithDataGate put in ctx, or nil.
func DataGateFrom(ctx context.Context) *DataGate {
	g, _ := ctx.Value(dataGateKey{}).(*DataGate)
	return g
}

// DataGater is a Transport that honours WithDataGate.
type DataGater interface {
	// GatesData reports whether every Send honours a DataGate.
	GatesData() bool
}

// GatesData: SMTPTransport honours a DataGate.
func (t *SMTPTransport) GatesData() bool { return true }

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// stageReset is the RSET that opens a transaction after a failed one. It
// is reported as StageMail.
const stageReset = "rset"

// command is one line of a transaction: its stage, the reply code it
// expects (a prefix: 25 takes 250 and 251) and where it lies in the
// command buffer.
type command struct {
	stage      string
	expect     int
	start, end int
}

// write sends b at once: the buffered writer holds nothing between
// commands, so a large b goes straight to the connection in one call.
func (sc *smtpConn) write(b []byte) error {
	w := sc.c.Text.W
	if _, err := w.Write(b); err != nil {
		return err
	}
	return w.Flush()
}

// appendDotStuffed appends msg as the DATA of a transaction: a line that
// starts with a dot gets another (RFC 5321 section 4.5.2), the last line
// ends in CRLF, and the lone dot that ends the data follows. msg has CRLF
// line endings, as Email.AppendTo writes them.
func appendDotStuffed(dst, msg []byte) []byte {
	dst = slices.Grow(dst, len(msg)+len(msg)/64+8)
	if len(msg) > 0 && msg[0] == '.' {
		dst = append(dst, '.')
	}
	for {
		i := bytes.Index(msg, []byte("\n."))
		if i < 0 {
			break
		}
		dst = append(dst, msg[:i+1]...)
		dst = append(dst, '.')
		msg = msg[i+1:]
	}
	dst = append(dst, msg...)
	if len(msg) == 0 {
		return append(dst, ".\r\n"...)
	}
	return appendDataEnd(dst)
}

// appendDataEnd ends the DATA in b, a message that needs no dot-stuffing:
// a line break if its last line lacks one, and the lone dot.
func appendDataEnd(b []byte) []byte {
	if !bytes.HasSuffix(b, []byte("\r\n")) {
		b = append(b, "\r\n"...)
	}
	return append(b, ".\r\n"...)
}
