// Reply types that src/protocol/messages.ts defines only as schemas, named here the way
// it names the others (type X = Infer<typeof X>), for tests that read those replies.
import type { Infer } from '../../src/protocol/schema.js';
import type { PartnerList as PartnerListSchema } from '../../src/protocol/messages.js';

export type PartnerList = Infer<typeof PartnerListSchema>;
