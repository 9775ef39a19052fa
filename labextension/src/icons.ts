import { LabIcon } from '@jupyterlab/ui-components';

import ecodeSvg from '../style/icons/ecode.svg';

/** The E-Code mark; its `jp-icon3` group follows the light and dark themes. */
export const ecodeIcon = new LabIcon({
  name: 'ecode-jupyter:ecode',
  svgstr: ecodeSvg
});
