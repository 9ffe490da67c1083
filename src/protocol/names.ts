// Patterns shared by the wire messages and the agent protocol, in a module of
// their own so the agent's client (on kmgr fetch's start-up path) need not load
// every message schema.

/** A business partner's name: what people type, also in file names and URLs. */
export const PARTNER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
