import { openMemoryStores } from '../../src/store/memory.ts';
import { locationContract } from './contract.ts';

locationContract('memory', async (options) => openMemoryStores(options));
