package mailer

import "context"

// A Chain lets one sender run its messages back to back on one relay
// connection, each transaction opened in the same write as the previous
// message's final dot. RFC 2920 allows a group of pipelined commands to
// start with the end of a message's content, so MAIL FROM, RCPT TO and DATA
// of the next message go out with the "." of this one, and the relay's
// answers to both come back together: one round trip a message instead of
// two, and one write and one wait fewer.
//
// A sender that knows what it will send next puts a Chain in the context of
// each Send (WithChain) and sets Next. An SMTPTransport whose relay offers
// PIPELINING calls Next when the message may go (its DataGate is open); if
// Next returns an email, its transaction is opened, and the connection stays
// with the Chain, its slot still held, for the Send of that email, which
// must come next on the same Chain. A Send of another email (or through
// another transport) closes that connection first: the relay, left waiting
// for a message after its 354, drops the transaction and takes nothing.
//
// The caller must call Release when it stops sending on the Chain, so that a
// held connection goes back to its pool. A Chain is used by one goroutine at
// a time; transports that do not chain ignore it.
type Chain struct {
	// Next returns the email the sender will send next on this Chain, or
	// nil when it has none ready. It is called from Send's goroutine, at
	// most once per Send.
	Next func() *Email

	t        *SMTPTransport // holds sc's slot
	sc       *smtpConn      // the held connection, nil when none
	from, to string         // the envelope opened on sc (replies unread)
}

type chainKey struct{}

// WithChain returns ctx carrying c for a Send.
func WithChain(ctx context.Context, c *Chain) context.Context {
	return context.WithValue(ctx, chainKey{}, c)
}

// ChainFrom returns the Chain WithChain put in ctx, or nil.
func ChainFrom(ctx context.Context) *Chain {
	c, _ := ctx.Value(chainKey{}).(*Chain)
	return c
}

// withoutChain hides ctx's Chain from the transports below: a Router picks
// a relay per message, so the next message's transaction may belong to
// another relay.
func withoutChain(ctx context.Context) context.Context {
	if ChainFrom(ctx) == nil {
		return ctx
	}
	return context.WithValue(ctx, chainKey{}, (*Chain)(nil))
}

// Release gives back the connection the Chain holds, if any. One with a
// transaction opened for a message that will not be sent is closed (the
// relay drops the unfinished transaction); the slot is freed either way.
func (c *Chain) Release() {
	if c == nil {
		return
	}
	t, sc := c.t, c.sc
	c.t, c.sc, c.from, c.to = nil, nil, "", ""
	if sc == nil {
		return
	}
	sc.discard()
	<-t.slots
}

// hold keeps sc, with its slot, for the next Send on the Chain, which must
// be of the envelope from, to.
func (c *Chain) hold(t *SMTPTransport, sc *smtpConn, from, to string) {
	c.t, c.sc, c.from, c.to = t, sc, from, to
}

// take returns the connection held for a Send through t of the envelope
// from, to, or nil; a connection held for anything else is released.
func (c *Chain) take(t *SMTPTransport, from, to string) *smtpConn {
	if c.sc != nil && c.t == t && c.from == from && c.to == to {
		sc := c.sc
		c.t, c.sc, c.from, c.to = nil, nil, "", ""
		return sc
	}
	c.Release()
	return nil
}
