// Debian's Chromium as the probe of this machine kind starts it: without the background-networking flags
// it keeps dialling hosts this closed network refuses.
export const chromiumArgs = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
