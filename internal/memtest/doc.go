// Package memtest holds no code: its tests measure the heap the Media
// Distributor holds per association across the packages that keep state
// for one (keytable with the srtpfast.Keys it publishes, the data plane's
// per-worker receive state, the slow path's records), each driven through
// its real API, and fail when bytes per association exceed a stated
// bound.
//
// It must not be imported: it exists so that a test may depend on
// mdslow, dataplane and keytable together without adding an import to
// any of them.
package memtest
