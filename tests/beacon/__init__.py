"""Browser tests of the beacon t.js in Debian's Chromium."""
