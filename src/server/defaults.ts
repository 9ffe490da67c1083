// kmgrd's defaults that its command line shows and the daemon applies: kept in a
// module of their own so `kmgrd --help` reads them without loading the server.

/** Requests per second per client address, before authentication (bursts of twice that). */
export const DEFAULT_RATE_PER_ADDRESS = 1000;
/** Requests per second per management key, after authentication. */
export const DEFAULT_RATE_PER_KEY = 100;
