import { describe, expect, it } from "vitest";
import {
  AmountOutOfRange,
  decide,
  DeliveryAlreadyExists,
  type DeliveryCommand,
  type DeliveryEventData,
  DeliveryNotFound,
  type DeliveryState,
  DomainError,
  InsufficientBudget,
  InsufficientQuantity,
  InvalidTransition,
} from "../../src/domain/index.js";
import { cmd, existing, HISTORY_TO, MAX_SAFE, recordOn, STATE_NAMES, type StateName, stateAfter } from "./deliveryScenario.js";

const ID = "delivery-1";

type CommandName = DeliveryCommand["type"];

const COMMANDS: { readonly [C in CommandName]: DeliveryCommand } = {
  CreateDelivery: cmd.create(2000, "ring twice"),
  StartDelivery: cmd.start(),
  PickupProducts: cmd.pickup(10, 3),
  DeliverProducts: cmd.deliver(20, 2),
  IncreaseBudget: cmd.increaseBudget(7),
  CancelDelivery: cmd.cancel("no longer needed"),
};

type ErrorClass = abstract new (...args: never[]) => DomainError;
type Expected = { readonly event: DeliveryEventData } | { readonly error: ErrorClass; readonly kind: string };

const rejects = (error: ErrorClass, kind: string): Expected => ({ error, kind });
const NOT_FOUND = rejects(DeliveryNotFound, "DeliveryNotFound");
const EXISTS = rejects(DeliveryAlreadyExists, "DeliveryAlreadyExists");
const INVALID = rejects(InvalidTransition, "InvalidTransition");

const CREATED: Expected = { event: { type: "created", budgetMinor: 2000, notes: "ring twice" } };
const STARTED: Expected = { event: { type: "started" } };
const PICKED_UP: Expected = { event: { type: "productsPickedUp", purchasePriceMinor: 10, quantity: 3 } };
const DELIVERED: Expected = { event: { type: "productsDelivered", sellPriceMinor: 20, quantity: 2 } };
const INCREASED: Expected = { event: { type: "budgetIncreased", amountMinor: 7 } };
const CANCELLED: Expected = { event: { type: "cancelled", reason: "no longer needed" } };

/** Every command in every state: the one event it records, or why it is rejected. */
const TABLE: { readonly [S in StateName]: { readonly [C in CommandName]: Expected } } = {
  NONE: {
    CreateDelivery: CREATED,
    StartDelivery: NOT_FOUND,
    PickupProducts: NOT_FOUND,
    DeliverProducts: NOT_FOUND,
    IncreaseBudget: NOT_FOUND,
    CancelDelivery: NOT_FOUND,
  },
  READY: {
    CreateDelivery: EXISTS,
    StartDelivery: STARTED,
    PickupProducts: INVALID,
    DeliverProducts: INVALID,
    IncreaseBudget: INCREASED,
    CancelDelivery: CANCELLED,
  },
  ACTIVE: {
    CreateDelivery: EXISTS,
    StartDelivery: INVALID,
    PickupProducts: PICKED_UP,
    DeliverProducts: INVALID,
    IncreaseBudget: INCREASED,
    CancelDelivery: CANCELLED,
  },
  COLLECTED: {
    CreateDelivery: EXISTS,
    StartDelivery: INVALID,
    PickupProducts: INVALID,
    DeliverProducts: DELIVERED,
    IncreaseBudget: INCREASED,
    CancelDelivery: CANCELLED,
  },
  COMPLETED: {
    CreateDelivery: EXISTS,
    StartDelivery: INVALID,
    PickupProducts: INVALID,
    DeliverProducts: INVALID,
    IncreaseBudget: INVALID,
    CancelDelivery: INVALID,
  },
  CANCELLED: {
    CreateDelivery: EXISTS,
    StartDelivery: INVALID,
    PickupProducts: INVALID,
    DeliverProducts: INVALID,
    IncreaseBudget: INVALID,
    CancelDelivery: INVALID,
  },
};

const ROWS = STATE_NAMES.flatMap((state) =>
  (Object.keys(COMMANDS) as CommandName[]).map((command) => ({ state, command, expected: TABLE[state][command] })),
);

function expectError<E extends DomainError>(result: DeliveryEventData | DomainError, error: abstract new (...args: never[]) => E): E {
  expect(result).toBeInstanceOf(error);
  return result as E;
}

describe("decide: every command in every state", () => {
  it("covers all 6 commands in all 6 states", () => {
    expect(ROWS).toHaveLength(36);
  });

  it.each(ROWS)("given $state, when $command, then as in the table", ({ state: stateName, command, expected }) => {
    const state = stateAfter(ID, HISTORY_TO[stateName]);
    expect(state.status).toBe(stateName);

    const result = decide(ID, COMMANDS[command], state);

    if ("event" in expected) {
      expect(result).not.toBeInstanceOf(DomainError);
      expect(result).toEqual(expected.event);
      return;
    }
    expect(result).toBeInstanceOf(expected.error);
    expect((result as DomainError).kind).toBe(expected.kind);
    if (result instanceof InvalidTransition) {
      // The message says where the delivery is, so a caller knows why.
      expect(result.at).toEqual({ deliveryId: ID, status: stateName, version: expect.any(Number) });
      expect(result.message).toContain(stateName);
    }
    if (result instanceof DeliveryNotFound || result instanceof DeliveryAlreadyExists) {
      expect(result.deliveryId).toBe(ID);
      expect(result.message).toContain(ID);
    }
  });
});

describe("decide: creation", () => {
  it("records the budget and notes as given, including a zero budget", () => {
    expect(decide(ID, cmd.create(0, ""), stateAfter(ID, []))).toEqual({ type: "created", budgetMinor: 0, notes: "" });
  });

  it("accepts a budget of exactly 2^53-1", () => {
    expect(decide(ID, cmd.create(MAX_SAFE, "big"), stateAfter(ID, []))).toEqual({
      type: "created",
      budgetMinor: MAX_SAFE,
      notes: "big",
    });
  });
});

describe("decide: picking up products", () => {
  const active = (budget: number) => stateAfter(ID, [cmd.create(budget), cmd.start()]);

  it("accepts a cost equal to the whole budget, which leaves a budget of 0", () => {
    const state = active(1000);
    const result = decide(ID, cmd.pickup(250, 4), state);
    expect(result).toEqual({ type: "productsPickedUp", purchasePriceMinor: 250, quantity: 4 });
    const after = recordOn(ID, state, cmd.pickup(250, 4)).delivery;
    expect(after).toMatchObject({ status: "COLLECTED", budgetMinor: 0, quantity: 4, purchasePriceMinor: 250 });
  });

  it("rejects a cost one above the budget with InsufficientBudget", () => {
    const error = expectError(decide(ID, cmd.pickup(1001, 1), active(1000)), InsufficientBudget);
    expect(error.kind).toBe("InsufficientBudget");
    expect(error).toMatchObject({ at: { deliveryId: ID, status: "ACTIVE" }, budgetMinor: 1000, costMinor: 1001 });
  });

  it("rejects a cost of price x quantity one above the budget", () => {
    const error = expectError(decide(ID, cmd.pickup(7, 143), active(1000)), InsufficientBudget);
    expect(error).toMatchObject({ budgetMinor: 1000, costMinor: 1001 });
  });

  it("accepts a purchase price of 0, leaving the budget untouched", () => {
    const state = active(1000);
    expect(decide(ID, cmd.pickup(0, 9), state)).toEqual({ type: "productsPickedUp", purchasePriceMinor: 0, quantity: 9 });
    expect(recordOn(ID, state, cmd.pickup(0, 9)).delivery).toMatchObject({ budgetMinor: 1000, quantity: 9, purchasePriceMinor: 0 });
  });

  it("accepts a cost of exactly 2^53-1 against a budget of 2^53-1", () => {
    // 2^53-1 = 6361 x 69431 x 20394401
    const price = 6361 * 69431;
    const quantity = 20394401;
    expect(price * quantity).toBe(MAX_SAFE);
    const state = active(MAX_SAFE);
    expect(decide(ID, cmd.pickup(price, quantity), state)).toEqual({ type: "productsPickedUp", purchasePriceMinor: price, quantity });
    expect(recordOn(ID, state, cmd.pickup(price, quantity)).delivery.budgetMinor).toBe(0);
  });

  it("rejects price x quantity past 2^53-1 with AmountOutOfRange, not InsufficientBudget", () => {
    const error = expectError(decide(ID, cmd.pickup(6361 * 69431, 20394402), active(MAX_SAFE)), AmountOutOfRange);
    expect(error.kind).toBe("AmountOutOfRange");
  });

  it("rejects a product that floating point would round, 2^27 x 2^27 = 2^54", () => {
    expectError(decide(ID, cmd.pickup(2 ** 27, 2 ** 27), active(MAX_SAFE)), AmountOutOfRange);
  });

  it("rejects the largest price times 2", () => {
    expectError(decide(ID, cmd.pickup(MAX_SAFE, 2), active(MAX_SAFE)), AmountOutOfRange);
  });

  it("counts a budget increase made before the pickup", () => {
    const state = stateAfter(ID, [cmd.create(100), cmd.start(), cmd.increaseBudget(50)]);
    expect(decide(ID, cmd.pickup(50, 3), state)).toEqual({ type: "productsPickedUp", purchasePriceMinor: 50, quantity: 3 });
    expectError(decide(ID, cmd.pickup(50, 4), state), InsufficientBudget);
  });
});

describe("decide: delivering products", () => {
  // 5 products bought at 100 from a budget of 1000: budget 500, quantity 5.
  const collected = () => stateAfter(ID, [cmd.create(1000), cmd.start(), cmd.pickup(100, 5)]);

  it("delivering all that is left completes the delivery", () => {
    const state = collected();
    expect(decide(ID, cmd.deliver(150, 5), state)).toEqual({ type: "productsDelivered", sellPriceMinor: 150, quantity: 5 });
    const after = recordOn(ID, state, cmd.deliver(150, 5)).delivery;
    expect(after).toMatchObject({ status: "COMPLETED", quantity: 0, deliveredQuantity: 5, budgetMinor: 500 + 750 });
  });

  it("delivering less than is left stays COLLECTED", () => {
    const state = collected();
    expect(decide(ID, cmd.deliver(150, 4), state)).toEqual({ type: "productsDelivered", sellPriceMinor: 150, quantity: 4 });
    const after = recordOn(ID, state, cmd.deliver(150, 4)).delivery;
    expect(after).toMatchObject({ status: "COLLECTED", quantity: 1, deliveredQuantity: 4 });
  });

  it("rejects delivering more than is left with InsufficientQuantity", () => {
    const error = expectError(decide(ID, cmd.deliver(150, 6), collected()), InsufficientQuantity);
    expect(error.kind).toBe("InsufficientQuantity");
    expect(error).toMatchObject({ at: { deliveryId: ID, status: "COLLECTED" }, available: 5, requested: 6 });
  });

  it("rejects delivering more than is left after a partial delivery", () => {
    const state = stateAfter(ID, [...HISTORY_TO.COLLECTED, cmd.deliver(150, 3)]);
    expectError(decide(ID, cmd.deliver(150, 3), state), InsufficientQuantity);
    expect(decide(ID, cmd.deliver(150, 2), state)).toEqual({ type: "productsDelivered", sellPriceMinor: 150, quantity: 2 });
  });

  it("adds the revenue to the budget (it does not subtract it)", () => {
    const state = collected();
    const after = recordOn(ID, state, cmd.deliver(30, 2)).delivery;
    expect(after.budgetMinor).toBe(500 + 60);
  });

  // 5 products bought for free: the budget stays 2^53-1 - 10.
  const collectedNearTheTop = () => stateAfter(ID, [cmd.create(MAX_SAFE - 10), cmd.start(), cmd.pickup(0, 5)]);

  it("accepts revenue that brings the budget to exactly 2^53-1", () => {
    const state = collectedNearTheTop();
    expect(existing(state).budgetMinor).toBe(MAX_SAFE - 10);
    expect(decide(ID, cmd.deliver(2, 5), state)).toEqual({ type: "productsDelivered", sellPriceMinor: 2, quantity: 5 });
    expect(recordOn(ID, state, cmd.deliver(2, 5)).delivery.budgetMinor).toBe(MAX_SAFE);
  });

  it("rejects revenue that would push the budget past 2^53-1 with AmountOutOfRange", () => {
    expectError(decide(ID, cmd.deliver(11, 1), collectedNearTheTop()), AmountOutOfRange);
  });

  it("rejects sell_price x quantity past 2^53-1 with AmountOutOfRange", () => {
    expectError(decide(ID, cmd.deliver(MAX_SAFE, 2), collected()), AmountOutOfRange);
  });

  it("accepts a sell price of 0", () => {
    const state = collected();
    expect(recordOn(ID, state, cmd.deliver(0, 5)).delivery).toMatchObject({ status: "COMPLETED", budgetMinor: 500, sellPriceMinor: 0 });
  });
});

describe("decide: increasing the budget", () => {
  it("accepts an increase to exactly 2^53-1", () => {
    const state = stateAfter(ID, [cmd.create(1000)]);
    expect(decide(ID, cmd.increaseBudget(MAX_SAFE - 1000), state)).toEqual({ type: "budgetIncreased", amountMinor: MAX_SAFE - 1000 });
    expect(recordOn(ID, state, cmd.increaseBudget(MAX_SAFE - 1000)).delivery.budgetMinor).toBe(MAX_SAFE);
  });

  it("rejects one more once the budget is 2^53-1", () => {
    const state = stateAfter(ID, [cmd.create(1000), cmd.increaseBudget(MAX_SAFE - 1000)]);
    expect(existing(state).budgetMinor).toBe(MAX_SAFE);
    expectError(decide(ID, cmd.increaseBudget(1), state), AmountOutOfRange);
  });

  it("rejects an increase one past 2^53-1 from any budget", () => {
    expectError(decide(ID, cmd.increaseBudget(MAX_SAFE - 999), stateAfter(ID, [cmd.create(1000)])), AmountOutOfRange);
  });

  it.each(["READY", "ACTIVE", "COLLECTED"] as const)("adds to the budget in %s", (status) => {
    const state = stateAfter(ID, HISTORY_TO[status]);
    const before = existing(state).budgetMinor;
    expect(recordOn(ID, state, cmd.increaseBudget(25)).delivery).toMatchObject({ status, budgetMinor: before + 25 });
  });
});

describe("decide: a delivery in several partial deliveries", () => {
  it("accumulates delivered_quantity, keeps the latest sell_price and never touches purchase_price", () => {
    const commands = [
      cmd.create(1000),
      cmd.start(),
      cmd.pickup(100, 5),
      cmd.deliver(120, 2),
      cmd.deliver(130, 1),
      cmd.deliver(150, 2),
    ];
    const steps = commands.map((_, i) => existing(stateAfter(ID, commands.slice(0, i + 1))));
    const [, , picked, first, second, last] = steps;

    expect(picked).toMatchObject({ status: "COLLECTED", quantity: 5, deliveredQuantity: 0, purchasePriceMinor: 100, sellPriceMinor: 0, budgetMinor: 500 });
    expect(first).toMatchObject({ status: "COLLECTED", quantity: 3, deliveredQuantity: 2, purchasePriceMinor: 100, sellPriceMinor: 120, budgetMinor: 740 });
    expect(second).toMatchObject({ status: "COLLECTED", quantity: 2, deliveredQuantity: 3, purchasePriceMinor: 100, sellPriceMinor: 130, budgetMinor: 870 });
    expect(last).toMatchObject({ status: "COMPLETED", quantity: 0, deliveredQuantity: 5, purchasePriceMinor: 100, sellPriceMinor: 150, budgetMinor: 1170 });
    expect(last?.version).toBe(6);
  });
});

describe("decide: purity", () => {
  it("does not change the state it is given (states are frozen) and answers the same twice", () => {
    const state: DeliveryState = stateAfter(ID, HISTORY_TO.COLLECTED);
    expect(Object.isFrozen(state)).toBe(true);
    const first = decide(ID, cmd.deliver(150, 2), state);
    const second = decide(ID, cmd.deliver(150, 2), state);
    expect(first).toEqual(second);
  });
});
