// Package chaos holds Herald's crash and fault tests: they build the herald
// binary, run it as a child process against a real SQLite file and an
// in-process SMTP relay (internal/faultsmtp) that records every message it
// accepts, and then kill the child, restart it and make the relay misbehave,
// checking afterwards that every reader got the digest once (apart from the
// repeats a crash or a lost reply can cause, which carry the same
// Message-ID) and that the database agrees with what the relay received.
//
// The package has no code of its own; its tests are in the _test.go files.
// bench/killtest.sh runs the kill test at full size.
package chaos
