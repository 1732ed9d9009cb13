import { createMemoryEventStore } from "../../src/store/memory/memoryEventStore.js";
import { eventStoreContract } from "./eventStoreContract.js";

eventStoreContract("memory", async (options = {}) => ({ store: createMemoryEventStore(options), cleanup: async () => {} }));
