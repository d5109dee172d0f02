package digest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"herald"
	"herald/articles"
)

// DefaultBatchSize is how many readers one enqueue transaction takes.
const DefaultBatchSize = 2000

// SampleReader is the address Preview builds for when given none: a reader
// who never received an issue.
const SampleReader = "reader@example.org"

// articlePage is the page size used to read candidate articles.
const articlePage = 500

// Options configure a Service.
type Options struct {
	// MessageIDDomain is the right-hand side of digest Message-IDs
	// (default "herald.invalid").
	MessageIDDomain string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives one line per issue built (default: discard).
	Logger *slog.Logger
	// BatchSize is how many readers are read, built and enqueued per
	// transaction (default DefaultBatchSize). Only one batch of readers is
	// in memory at a time, however long the list.
	BatchSize int
	// Queued, if set, is called each time a batch of an issue's messages
	// has been committed to the outbox, from the goroutine building the
	// issue. It lets a delivery engine claim them at once instead of at its
	// next poll (delivery.Engine.Wake), so that the first readers' mail
	// goes out while the rest are still being queued. It must not block.
	Queued func()
}

// Service makes digest issues: on schedule (RunDue), on demand (SendNow),
// and answers questions about them. It is safe for concurrent use.
type Service struct {
	store       Store
	src         ArticleSource
	newsletters []Newsletter
	opts        Options
	log         *slog.Logger

	mu       sync.Mutex
	building map[int64]bool // issues being built by this Service right now

	// bgCtx is the context of the builds StartNow runs in the background;
	// Stop cancels it and waits for them (bg).
	bgCtx    context.Context
	bgCancel context.CancelFunc
	bg       sync.WaitGroup
}

// NewService returns a Service for the configured newsletters, with their
// zero limits set to the defaults. It fails on an empty or repeated
// newsletter id.
func NewService(store Store, src ArticleSource, newsletters []Newsletter, opts Options) (*Service, error) {
	if store == nil || src == nil {
		return nil, errors.New("digest: NewService needs a store and an article source")
	}
	if opts.MessageIDDomain == "" {
		opts.MessageIDDomain = "herald.invalid"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = DefaultBatchSize
	}
	s := &Service{store: store, src: src, opts: opts, log: opts.Logger, building: make(map[int64]bool)}
	s.bgCtx, s.bgCancel = context.WithCancel(context.Background())
	seen := make(map[string]bool, len(newsletters))
	for _, n := range newsletters {
		if n.ID == "" {
			return nil, errors.New("digest: a newsletter has no id")
		}
		if seen[n.ID] {
			return nil, fmt.Errorf("digest: newsletter %q is configured twice", n.ID)
		}
		seen[n.ID] = true
		if n.Name == "" {
			n.Name = n.ID
		}
		n.Feeds = slices.Clone(n.Feeds)
		s.newsletters = append(s.newsletters, n.withDefaults())
	}
	return s, nil
}

// Newsletters returns the configured newsletters, defaults applied, in
// configuration order.
func (s *Service) Newsletters() []Newsletter { return slices.Clone(s.newsletters) }

// Newsletter returns the newsletter with that id.
func (s *Service) Newsletter(id string) (Newsletter, bool) {
	for _, n := range s.newsletters {
		if n.ID == id {
			return n, true
		}
	}
	return Newsletter{}, false
}

// MessageID returns the Message-ID (without angle brackets) of the digest
// of issue issueID to subscriberID: the same on every attempt, so that a
// retried message is the same message.
func MessageID(issueID, subscriberID int64, domain string) string {
	return "herald.digest." + strconv.FormatInt(issueID, 10) + "." + strconv.FormatInt(subscriberID, 10) + "@" + domain
}

// now returns the clock's time at the stores' precision (milliseconds), so
// that an issue's CreatedAt reads back as it was written and the Since of
// its readers compares exactly with the articles' CreatedAt.
func (s *Service) now() time.Time { return s.opts.Now().UTC().Truncate(time.Millisecond) }

func (s *Service) newsletter(id string) (Newsletter, error) {
	n, ok := s.Newsletter(id)
	if !ok {
		return Newsletter{}, herald.Errorf(herald.ENOTFOUND, "No newsletter %q.", id)
	}
	return n, nil
}

// SendNow builds a manual issue of the newsletter now and enqueues it for
// every reader who has something new, returning it in status sending.
// ENOTFOUND for an unknown newsletter; ECONFLICT when no reader has an
// article they have not received. Nothing is stored in that case, unless
// articles vanish between the check and the build: the issue is then kept
// as empty (never sent, never archived) and ECONFLICT is returned too.
//
// When ctx ends mid-build the issue stays in status building, and the next
// RunDue finishes it.
func (s *Service) SendNow(ctx context.Context, newsletterID string) (*Issue, error) {
	n, iss, cands, err := s.createNow(ctx, newsletterID)
	if err != nil {
		return nil, err
	}
	if err := s.build(ctx, n, iss, cands); err != nil {
		return nil, fmt.Errorf("send %s now: issue %d: %w", n.ID, iss.ID, err)
	}
	if iss.Status == IssueEmpty {
		return nil, s.nothingNew(n)
	}
	return iss, nil
}

// StartNow is SendNow for a caller that must not wait for the build, such
// as a web request under a write timeout: building an issue queues a
// message for every reader, which at hundreds of thousands of readers
// takes longer than a request may. The checks run and the issue is created
// (status building) before StartNow returns, with the same errors as
// SendNow; the build then goes on in the background, on a context that
// Stop cancels, not ctx. An issue whose build is cut off (Stop, a crash)
// stays building and the next RunDue finishes it. Should the articles
// vanish between the check and the build, the issue ends empty, as with
// SendNow, but no error reaches the caller.
func (s *Service) StartNow(ctx context.Context, newsletterID string) (*Issue, error) {
	n, iss, cands, err := s.createNow(ctx, newsletterID)
	if err != nil {
		return nil, err
	}
	started := *iss
	if !s.claim(iss.ID) {
		return &started, nil // cannot happen for a new issue; someone is on it
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		defer s.release(iss.ID)
		defer func() {
			// No request's recovery is above this goroutine: a panic
			// would end the process. The issue stays building.
			if v := recover(); v != nil {
				s.log.Error("digest issue build panicked; the scheduler retries it", "issue_id", iss.ID,
					"newsletter", n.ID, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			}
		}()
		if err := s.buildClaimed(s.bgCtx, n, iss, cands); err != nil {
			s.log.Warn("digest issue build stopped; the scheduler finishes it", "issue_id", iss.ID,
				"newsletter", n.ID, "error", err.Error())
		}
	}()
	return &started, nil
}

// Stop cancels the builds StartNow left running and waits for them to
// return. Their issues stay building; RunDue finishes them.
func (s *Service) Stop() {
	s.bgCancel()
	s.bg.Wait()
}

func (s *Service) nothingNew(n Newsletter) error {
	return herald.Errorf(herald.ECONFLICT,
		"Nothing new to send for %s: no reader has an article they have not received.", n.Name)
}

// createNow runs SendNow's checks and creates the manual issue, in status
// building, returning it with the newsletter and the candidate articles.
func (s *Service) createNow(ctx context.Context, newsletterID string) (Newsletter, *Issue, []*articles.Article, error) {
	n, err := s.newsletter(newsletterID)
	if err != nil {
		return Newsletter{}, nil, nil, err
	}
	now := s.now()
	if _, err := s.store.SeenNewsletter(ctx, n.ID, now); err != nil {
		return n, nil, nil, fmt.Errorf("send %s now: %w", n.ID, err)
	}
	cands, err := s.candidates(ctx, n, now, true)
	if err != nil {
		return n, nil, nil, fmt.Errorf("send %s now: %w", n.ID, err)
	}
	has, err := s.anyoneHasNew(ctx, n, cands, now)
	if err != nil {
		return n, nil, nil, fmt.Errorf("send %s now: %w", n.ID, err)
	} else if !has {
		return n, nil, nil, s.nothingNew(n)
	}
	iss := &Issue{NewsletterID: n.ID, Manual: true, Status: IssueBuilding, CreatedAt: now}
	// A manual issue's slot is its request time; should a scheduled slot
	// or another manual send hold that very millisecond, take the next.
	for i := range 10 {
		iss.Slot = now.Add(time.Duration(i) * time.Millisecond)
		iss.Subject = subject(n, iss.Slot)
		if err = s.store.CreateIssue(ctx, iss); !herald.IsCode(err, herald.ECONFLICT) {
			break
		}
	}
	if err != nil {
		return n, nil, nil, fmt.Errorf("send %s now: %w", n.ID, err)
	}
	return n, iss, cands, nil
}

// RunDue makes one scheduler pass: it finishes issues left in status
// building (by a crash, or a send whose caller went away), creates and
// builds the issue of each newsletter's latest slot when it has none yet,
// and marks the issues whose messages have all settled as sent.
//
// A slot is due when it is after the newsletter was first seen and after
// the slot of its latest issue (a manual one included: a manual send just
// after a slot stands for it). After downtime that spanned several slots
// only the latest is sent: one catch-up issue, never a burst. Two passes or
// two instances racing for a slot are settled by the store: one creates the
// issue, the other gets ECONFLICT and moves on. An issue another process is
// still building (herald digest send beside herald serve) may be resumed
// alongside it: duplicate work, never a duplicate message, as EnqueueIssue
// skips readers already enqueued and FinishBuilding counts again.
//
// An error with one newsletter does not stop the others; RunDue returns
// them all, joined.
func (s *Service) RunDue(ctx context.Context) error {
	now := s.now()
	var errs []error
	if err := s.resume(ctx); err != nil {
		errs = append(errs, err)
	}
	for _, n := range s.newsletters {
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		if err := s.runSlot(ctx, n, now); err != nil {
			errs = append(errs, fmt.Errorf("newsletter %s: %w", n.ID, err))
		}
	}
	if err := s.store.SettleIssues(ctx, now); err != nil {
		errs = append(errs, fmt.Errorf("settle issues: %w", err))
	}
	return errors.Join(errs...)
}

// resume finishes the issues left in status building that no goroutine of
// this Service is building.
func (s *Service) resume(ctx context.Context) error {
	var errs []error
	var before int64
	for {
		page, err := s.store.FindIssues(ctx, IssueFilter{Statuses: []IssueStatus{IssueBuilding}, BeforeID: before, Limit: 100})
		if err != nil {
			return fmt.Errorf("find building issues: %w", err)
		}
		for _, iss := range page {
			if err := s.resumeIssue(ctx, iss); err != nil {
				errs = append(errs, fmt.Errorf("resume issue %d: %w", iss.ID, err))
			}
		}
		if len(page) < 100 {
			return errors.Join(errs...)
		}
		before = page[len(page)-1].ID
	}
}

func (s *Service) resumeIssue(ctx context.Context, iss *Issue) error {
	if s.isBuilding(iss.ID) {
		return nil
	}
	n, ok := s.Newsletter(iss.NewsletterID)
	if !ok {
		// The newsletter left the configuration: close what was queued.
		s.log.Warn("digest issue of an unknown newsletter closed", "issue_id", iss.ID, "newsletter", iss.NewsletterID)
		_, err := s.store.FinishBuilding(ctx, iss.ID, s.now())
		return err
	}
	s.log.Info("digest issue resumed", "issue_id", iss.ID, "newsletter", n.ID)
	cands, err := s.candidates(ctx, n, iss.CreatedAt, true)
	if err != nil {
		return err
	}
	return s.build(ctx, n, iss, cands)
}

// runSlot creates and builds the issue of n's latest slot at or before now,
// when it is due.
func (s *Service) runSlot(ctx context.Context, n Newsletter, now time.Time) error {
	if n.Schedule == nil {
		return nil
	}
	slot := n.Schedule.Prev(now)
	if slot.IsZero() {
		return nil
	}
	first, err := s.store.SeenNewsletter(ctx, n.ID, now)
	if err != nil {
		return err
	}
	if !slot.After(first) {
		return nil
	}
	last, err := s.store.LastIssue(ctx, n.ID)
	switch {
	case err == nil && !slot.After(last.Slot):
		return nil
	case err != nil && !herald.IsCode(err, herald.ENOTFOUND):
		return err
	}
	iss := &Issue{NewsletterID: n.ID, Slot: slot.UTC(), Status: IssueBuilding, Subject: subject(n, slot), CreatedAt: now}
	if err := s.store.CreateIssue(ctx, iss); herald.IsCode(err, herald.ECONFLICT) {
		return nil // another pass or instance has it
	} else if err != nil {
		return err
	}
	cands, err := s.candidates(ctx, n, now, true)
	if err != nil {
		return fmt.Errorf("issue %d: %w", iss.ID, err)
	}
	if err := s.build(ctx, n, iss, cands); err != nil {
		return fmt.Errorf("issue %d: %w", iss.ID, err)
	}
	return nil
}

// subject is an issue's subject line: the newsletter's name and the date of
// the slot in the newsletter's time zone.
func subject(n Newsletter, slot time.Time) string {
	loc := time.UTC
	if n.Schedule != nil {
		loc = n.Schedule.Location()
	}
	return n.Name + " — " + slot.In(loc).Format("January 2, 2006")
}

func (s *Service) isBuilding(id int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.building[id]
}

// claim marks an issue as being built by this Service; false when it
// already is.
func (s *Service) claim(id int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.building[id] {
		return false
	}
	s.building[id] = true
	return true
}

func (s *Service) release(id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.building, id)
}

// builder runs Build for a stream of readers, once per distinct Since: the
// readers who received the same issues get the same edition, so a list of
// any length costs a few Builds and a map lookup per reader.
type builder struct {
	n     Newsletter
	cands []*articles.Article
	now   time.Time
	memo  map[int64][]int64
}

func newBuilder(n Newsletter, cands []*articles.Article, now time.Time) *builder {
	return &builder{n: n, cands: cands, now: now, memo: make(map[int64][]int64)}
}

// articleIDs returns the ids of the articles r gets, shared between readers
// with the same Since; callers must not modify them.
func (b *builder) articleIDs(r Reader) []int64 {
	key := int64(math.MinInt64) // never received an issue
	if !r.Since.IsZero() {
		key = r.Since.UnixMilli()
	}
	if ids, ok := b.memo[key]; ok {
		return ids
	}
	got := Build(b.n, Reader{Since: r.Since}, b.cands, b.now)
	ids := make([]int64, len(got))
	for i, a := range got {
		ids[i] = a.ID
	}
	b.memo[key] = ids
	return ids
}

// anyoneHasNew reports whether at least one reader of n would get an
// article in an issue built now, reading the list until one does.
func (s *Service) anyoneHasNew(ctx context.Context, n Newsletter, cands []*articles.Article, now time.Time) (bool, error) {
	if len(cands) == 0 {
		return false, nil
	}
	b := newBuilder(n, cands, now)
	var after int64
	for {
		readers, err := s.store.Readers(ctx, n.ID, after, s.opts.BatchSize, now)
		if err != nil {
			return false, err
		}
		for _, r := range readers {
			if len(b.articleIDs(r)) > 0 {
				return true, nil
			}
		}
		if len(readers) < s.opts.BatchSize {
			return false, nil
		}
		after = readers[len(readers)-1].SubscriberID
	}
}

// build enqueues issue iss for every reader of n who has something new in
// cands, from where an earlier attempt stopped, then finishes it and
// updates *iss. Articles are chosen as of iss.CreatedAt.
func (s *Service) build(ctx context.Context, n Newsletter, iss *Issue, cands []*articles.Article) error {
	if !s.claim(iss.ID) {
		return nil // another goroutine of this Service is on it
	}
	defer s.release(iss.ID)
	return s.buildClaimed(ctx, n, iss, cands)
}

// AnalyzeAfter is how many messages an issue's build queues before the
// store is asked, once, to refresh its planner statistics.
const AnalyzeAfter = 10_000

// Analyzer is implemented by a Store whose query planner needs fresh
// statistics when an issue adds many outbox rows at once (PostgreSQL).
// Without them the delivery engine's claims, which run while the issue is
// still being queued, are planned for the outbox as it was before: on
// PostgreSQL a claim of 500 then sorted every queued row (50 ms at 43,000
// queued) instead of reading 500 from the index. Autovacuum's analyse
// would come, but up to a minute later, or never where it is off.
type Analyzer interface {
	AnalyzeMessages(ctx context.Context) error
}

// analyze refreshes the store's statistics when it implements Analyzer; a
// failure is logged, not returned: the build goes on.
func (s *Service) analyze(ctx context.Context) {
	a, ok := s.store.(Analyzer)
	if !ok {
		return
	}
	if err := a.AnalyzeMessages(ctx); err != nil && ctx.Err() == nil {
		s.log.Warn("refresh planner statistics during an issue build", "error", err.Error())
	}
}

// buildClaimed is build for an issue this Service has claimed.
func (s *Service) buildClaimed(ctx context.Context, n Newsletter, iss *Issue, cands []*articles.Article) error {
	start := time.Now()
	after, err := s.store.LastEnqueued(ctx, iss.ID)
	if err != nil {
		return err
	}
	resumedAt := after
	b := newBuilder(n, cands, iss.CreatedAt)
	batch := make([]IssueMessage, 0, s.opts.BatchSize)
	enqueued := 0
	analyzed := false
	for {
		readers, err := s.store.Readers(ctx, n.ID, after, s.opts.BatchSize, iss.CreatedAt)
		if err != nil {
			return fmt.Errorf("readers after %d: %w", after, err)
		}
		batch = batch[:0]
		for _, r := range readers {
			ids := b.articleIDs(r)
			if len(ids) == 0 {
				continue
			}
			batch = append(batch, IssueMessage{
				SubscriberID: r.SubscriberID,
				ArticleIDs:   ids,
				MessageID:    MessageID(iss.ID, r.SubscriberID, s.opts.MessageIDDomain),
			})
		}
		if len(batch) > 0 {
			if err := s.store.EnqueueIssue(ctx, iss.ID, batch, s.now()); err != nil {
				return fmt.Errorf("enqueue readers after %d: %w", after, err)
			}
			enqueued += len(batch)
			if s.opts.Queued != nil {
				s.opts.Queued()
			}
			if !analyzed && enqueued >= AnalyzeAfter {
				analyzed = true
				s.analyze(ctx)
			}
		}
		if len(readers) < s.opts.BatchSize {
			break
		}
		after = readers[len(readers)-1].SubscriberID
	}
	fin, err := s.store.FinishBuilding(ctx, iss.ID, s.now())
	if err != nil {
		return err
	}
	*iss = *fin
	s.log.Info("digest issue built", "issue_id", iss.ID, "newsletter", n.ID, "status", string(iss.Status),
		"manual", iss.Manual, "readers", iss.Readers, "enqueued_now", enqueued, "resumed_after_subscriber_id", resumedAt,
		"candidates", len(cands), "editions", len(b.memo), "duration", time.Since(start).Round(time.Millisecond))
	return nil
}

// candidates returns n's articles that an issue built at now may carry:
// published within n.Lookback, known to Herald by now, newest first. With
// light set, each is a copy holding only what Build reads (ID, times), so
// that a long archive of large articles does not sit in memory during a
// build.
func (s *Service) candidates(ctx context.Context, n Newsletter, now time.Time, light bool) ([]*articles.Article, error) {
	var out []*articles.Article
	f := articles.Filter{Since: now.Add(-n.Lookback), Limit: articlePage}
	for {
		page, err := s.src.FindArticles(ctx, f)
		if err != nil {
			return nil, fmt.Errorf("find articles: %w", err)
		}
		if len(page) == 0 {
			break
		}
		for _, a := range page {
			if a.CreatedAt.After(now) || !n.Matches(a) {
				continue
			}
			if light {
				a = &articles.Article{ID: a.ID, PublishedAt: a.PublishedAt, CreatedAt: a.CreatedAt}
			}
			out = append(out, a)
		}
		f.AfterID = page[len(page)-1].ID
	}
	slices.SortFunc(out, newerFirst)
	return out, nil
}

// Issue returns one issue, or ENOTFOUND.
func (s *Service) Issue(ctx context.Context, id int64) (*Issue, error) {
	iss, err := s.store.FindIssue(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("issue %d: %w", id, err)
	}
	return iss, nil
}

// Progress counts the messages of an issue by outcome; ENOTFOUND for an
// unknown issue.
func (s *Service) Progress(ctx context.Context, id int64) (Progress, error) {
	if _, err := s.Issue(ctx, id); err != nil {
		return Progress{}, err
	}
	p, err := s.store.IssueProgress(ctx, id)
	if err != nil {
		return Progress{}, fmt.Errorf("issue %d progress: %w", id, err)
	}
	return p, nil
}

// Follow returns iss as it stands now with its progress, for whoever
// follows a delivery. An issue still marked sending whose messages have all
// settled is marked sent first, as the scheduler's next pass would mark it
// (Store.SettleIssue), so that nobody reads it as sending after the fact
// and its completion time, once shown, stays as shown.
func (s *Service) Follow(ctx context.Context, iss *Issue) (*Issue, Progress, error) {
	p, err := s.store.IssueProgress(ctx, iss.ID)
	if err != nil {
		return nil, Progress{}, fmt.Errorf("issue %d progress: %w", iss.ID, err)
	}
	if iss.Status != IssueSending || p.Pending() > 0 {
		return iss, p, nil
	}
	// One write per issue: from then on it reads as sent. The store checks
	// again that nothing is left to send, in the same statement.
	settled, err := s.store.SettleIssue(ctx, iss.ID, s.now())
	if err != nil {
		return nil, Progress{}, fmt.Errorf("settle issue %d: %w", iss.ID, err)
	}
	return settled, p, nil
}

// Issues returns the issues matching f, newest first.
func (s *Service) Issues(ctx context.Context, f IssueFilter) ([]*Issue, error) {
	list, err := s.store.FindIssues(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("find issues: %w", err)
	}
	return list, nil
}

// IssueArticles returns the articles of the issue's main edition (what the
// most readers got), in the order the email showed them, for the archive.
// An article deleted since is skipped.
func (s *Service) IssueArticles(ctx context.Context, iss *Issue) ([]*articles.Article, error) {
	return s.articlesByID(ctx, iss.ArticleIDs)
}

// EditionArticles returns an edition and its articles in the order the
// email shows them, for rendering. ENOTFOUND for an unknown edition; an
// article deleted since is skipped.
func (s *Service) EditionArticles(ctx context.Context, editionID int64) (*Edition, []*articles.Article, error) {
	ed, err := s.store.Edition(ctx, editionID)
	if err != nil {
		return nil, nil, fmt.Errorf("edition %d: %w", editionID, err)
	}
	as, err := s.articlesByID(ctx, ed.ArticleIDs)
	if err != nil {
		return nil, nil, fmt.Errorf("edition %d: %w", editionID, err)
	}
	return ed, as, nil
}

func (s *Service) articlesByID(ctx context.Context, ids []int64) ([]*articles.Article, error) {
	out := make([]*articles.Article, 0, len(ids))
	for _, id := range ids {
		a, err := s.src.FindArticleByID(ctx, id)
		if herald.IsCode(err, herald.ENOTFOUND) {
			continue
		} else if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// Preview returns the digest a reader would get if the newsletter's issue
// were built now: for the active subscriber of the newsletter with that
// address, or, with email empty, for a sample reader who never received an
// issue (SampleReader). ENOTFOUND for an unknown newsletter or an address
// that is not an active subscriber of it. The articles are complete, for
// rendering; the list is empty when there is nothing new.
func (s *Service) Preview(ctx context.Context, newsletterID, email string) (Reader, []*articles.Article, error) {
	n, err := s.newsletter(newsletterID)
	if err != nil {
		return Reader{}, nil, err
	}
	r := Reader{Email: SampleReader, Name: "Reader"}
	if email = strings.TrimSpace(email); email != "" {
		r, err = s.store.Reader(ctx, n.ID, email)
		if herald.IsCode(err, herald.ENOTFOUND) {
			return Reader{}, nil, herald.Errorf(herald.ENOTFOUND, "No active subscriber of %s has that address.", n.Name)
		} else if err != nil {
			return Reader{}, nil, fmt.Errorf("preview %s: %w", n.ID, err)
		}
	}
	now := s.now()
	cands, err := s.candidates(ctx, n, now, false)
	if err != nil {
		return Reader{}, nil, fmt.Errorf("preview %s: %w", n.ID, err)
	}
	return r, Build(n, r, cands, now), nil
}
