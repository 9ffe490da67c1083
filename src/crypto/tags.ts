// The purposes a management-key signature can carry (threat 7: a signature
// made for one purpose is never valid for another). In a module of their own
// so that the agent protocol can name them without loading the signing code.
export const TAG_REQUEST = 'kmgr/request/v1';
export const TAG_BINDING = 'kmgr/binding/v1';
/** A statement by the old management key naming its successor (kmgr rekey). */
export const TAG_SUCCESSION = 'kmgr/succession/v1';
export type SignatureTag = typeof TAG_REQUEST | typeof TAG_BINDING | typeof TAG_SUCCESSION;
