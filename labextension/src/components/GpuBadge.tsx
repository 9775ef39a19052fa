/**
 * The GPUs a project's kernels hold, as a badge in the project view's header: which devices,
 * which kernels, what they have cost so far (the server settles GPU time every slice).
 */
import * as React from 'react';

import { IGpuLease } from '../api';
import { formatCredits } from '../format';

export function GpuBadge(props: { leases?: IGpuLease[] }): JSX.Element | null {
  const leases = props.leases ?? [];
  if (leases.length === 0) {
    return null;
  }
  const names = Array.from(new Set(leases.map(lease => lease.name)));
  const cost = leases.reduce((sum, lease) => sum + lease.cost_micros, 0);
  const detail = leases
    .map(
      lease =>
        `${lease.name} ${lease.device} · kernel ${lease.kernel_id.slice(0, 8)}`
    )
    .join('\n');
  return (
    <span
      className="jp-EcodeBadge jp-EcodeGpuBadge"
      title={`GPU leases of this project's kernels:\n${detail}`}
      data-gpus={leases.length}
    >
      {`GPU ×${leases.length} · ${names.join(', ')} · ${formatCredits(cost)}`}
    </span>
  );
}
