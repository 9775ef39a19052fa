import { describe, expect, it } from 'vitest';

import { IModelPrice, pickableModels } from '../src/api';

const price = (model: string): IModelPrice => ({
  model,
  free: false,
  input: 1,
  output: 2
});

const prices = [
  price('claude-haiku-4-5'),
  price('claude-opus-4-1'),
  price('gpt-5-mini')
];
const agent = {
  default: { provider: 'anthropic', model: 'claude-haiku-4-5' },
  providers: ['anthropic', 'openai', 'offline']
};

describe('pickableModels', () => {
  it('offers every priced model when the admin set no list', () => {
    expect(pickableModels(prices, agent).map(p => p.model)).toEqual([
      'claude-haiku-4-5',
      'claude-opus-4-1',
      'gpt-5-mini'
    ]);
    expect(pickableModels(prices, null)).toHaveLength(3);
  });

  it('offers only the allowed ones, by id or provider:model', () => {
    const allowed = {
      ...agent,
      allowed: ['claude-haiku-4-5', 'openai:gpt-5-mini']
    };
    expect(pickableModels(prices, allowed).map(p => p.model)).toEqual([
      'claude-haiku-4-5',
      'gpt-5-mini'
    ]);
  });

  it('offers none when only offline is allowed', () => {
    expect(pickableModels(prices, { ...agent, allowed: [] })).toEqual([]);
  });
});
