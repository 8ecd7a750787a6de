"""Where balances come from: Spacescan's API (and, with the chain issue, a full node)."""
