//! AEAD_AES_256_GCM_SIV (RFC 8452), composed from RustCrypto's `aes`,
//! `polyval` and `ctr`: the same primitives the `aes-gcm-siv` crate uses,
//! one difference in how they are called.
//!
//! Why not `aes_gcm_siv::Aes256GcmSiv` itself: every seal derives two
//! per-nonce subkeys by encrypting six counter blocks with the
//! key-generating key (RFC 8452 §4). The crate encrypts them one block per
//! AES call. In Wasm there are no AES instructions, and RustCrypto's
//! software AES (fixsliced, two blocks per call on 32-bit targets) costs the
//! same for one block as for two, so the crate's six calls do the work of
//! twelve blocks. Here the six blocks go through one `encrypt_blocks`
//! call: three fixsliced calls instead of six, about 20 % of a field's
//! seal in V8 (docs/performance.md). Nothing else changes: the subkeys,
//! the POLYVAL input, the tag and the CTR keystream are exactly RFC 8452's,
//! checked by the RFC's Appendix C.2 vectors and, for random keys, nonces,
//! AADs and messages, against `aes-gcm-siv` itself (tests below).
//!
//! Constant time: AES (fixsliced) and POLYVAL (soft backend) are
//! constant-time in RustCrypto; the tag is compared with `subtle`.
//! Derived key bytes are wiped (`Zeroizing`) and the expanded AES round
//! keys on drop (feature `zeroize` of `aes`); POLYVAL 0.6 keeps `H` in a
//! state that is not wiped, exactly as inside `aes-gcm-siv`.

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockEncrypt, InnerIvInit, KeyInit, StreamCipherCore};
use aes::Aes256;
use polyval::universal_hash::UniversalHash;
use polyval::Polyval;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

type Block = aes::Block;

pub const KEY_LEN: usize = 32;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;

/// RFC 8452 §6: plaintext and associated data are at most 2^36 bytes.
const MAX_LEN: u64 = 1 << 36;

/// CTR with a 32-bit little-endian counter in the first four bytes of the
/// block (RFC 8452 §4), over the per-nonce encryption key.
type Ctr32LE<'k> = ctr::CtrCore<&'k Aes256, ctr::flavors::Ctr32LE>;

/// Sealing or opening failed: a length over RFC 8452's limits, or (when
/// opening) a tag that does not match. Says nothing more, by design.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AeadError;

/// AES-256-GCM-SIV under one key: the key-generating key's AES schedule is
/// expanded once, here; each seal or open derives its per-nonce subkeys.
#[derive(Clone)]
pub struct Aes256GcmSiv {
    key_generating_key: Aes256,
}

impl Aes256GcmSiv {
    pub fn new(key: &[u8; KEY_LEN]) -> Self {
        Aes256GcmSiv {
            key_generating_key: Aes256::new(GenericArray::from_slice(key)),
        }
    }

    /// RFC 8452 §4, key derivation: blocks `le32(i) || nonce` for i in
    /// 0..6, encrypted in one call; the first 8 bytes of each make the
    /// 128-bit authentication key (blocks 0-1) and the 256-bit encryption
    /// key (blocks 2-5). About half of a short message's seal in V8
    /// (docs/performance.md): a caller sealing many messages under one
    /// nonce keeps the result and seals each through it.
    pub fn message_keys(&self, nonce: &[u8; NONCE_LEN]) -> MessageKeys {
        let mut blocks = [Block::default(); 6];
        for (i, block) in blocks.iter_mut().enumerate() {
            block[..4].copy_from_slice(&(i as u32).to_le_bytes());
            block[4..].copy_from_slice(nonce);
        }
        self.key_generating_key.encrypt_blocks(&mut blocks);
        let mut keys = Zeroizing::new([0u8; 48]);
        for (half, block) in keys.chunks_exact_mut(8).zip(blocks.iter_mut()) {
            half.copy_from_slice(&block[..8]);
            block.as_mut_slice().zeroize();
        }
        let (auth, enc) = keys.split_at(16);
        MessageKeys {
            nonce: *nonce,
            authentication: Polyval::new(GenericArray::from_slice(auth)),
            encryption: Aes256::new(GenericArray::from_slice(enc)),
        }
    }

    /// Encrypts `buf` in place and returns the tag.
    pub fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], AeadError> {
        self.message_keys(nonce).seal_in_place(aad, buf)
    }

    /// Decrypts `buf` in place if `tag` authenticates it. On a mismatch
    /// the buffer is wiped: unauthenticated plaintext never reaches the
    /// caller.
    pub fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AeadError> {
        self.message_keys(nonce).open_in_place(aad, buf, tag)
    }

    /// Allocating form (the npm package's RFC 8452 API): ciphertext || tag.
    pub fn seal(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, AeadError> {
        let mut out = Vec::with_capacity(plaintext.len() + TAG_LEN);
        out.extend_from_slice(plaintext);
        let tag = self.seal_in_place(nonce, aad, &mut out)?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Opens ciphertext || tag.
    pub fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, AeadError> {
        let split = sealed.len().checked_sub(TAG_LEN).ok_or(AeadError)?;
        let (ciphertext, tag) = sealed.split_at(split);
        let tag: &[u8; TAG_LEN] = tag.try_into().map_err(|_| AeadError)?;
        let mut out = Zeroizing::new(ciphertext.to_vec());
        self.open_in_place(nonce, aad, &mut out, tag)?;
        Ok(out)
    }
}

/// RFC 8452 §6: plaintext and authenticated data of at most 2^36 bytes.
fn within_limits(aad: &[u8], buf: &[u8]) -> Result<(), AeadError> {
    if buf.len() as u64 > MAX_LEN || aad.len() as u64 > MAX_LEN {
        return Err(AeadError);
    }
    Ok(())
}

/// The per-nonce subkeys of one nonce (RFC 8452 §4), bound to it: every
/// message sealed or opened through them uses that nonce. Sealing several
/// messages under one nonce is what GCM-SIV is built to survive (RFC 8452
/// §9: only messages equal in both authenticated data and plaintext give
/// equal ciphertexts); the caller keeps those pairs distinct
/// (docs/envelope.md: the field counter in the authenticated data).
#[derive(Clone)]
pub struct MessageKeys {
    nonce: [u8; NONCE_LEN],
    authentication: Polyval,
    encryption: Aes256,
}

impl MessageKeys {
    /// The nonce these keys were derived from.
    pub fn nonce(&self) -> &[u8; NONCE_LEN] {
        &self.nonce
    }

    /// RFC 8452 §4, the tag: POLYVAL over the padded AAD, the padded
    /// plaintext and the bit lengths; XOR the nonce; clear the top bit;
    /// encrypt with the message key.
    fn tag(&self, aad: &[u8], plaintext: &[u8]) -> [u8; TAG_LEN] {
        let mut polyval = self.authentication.clone();
        polyval.update_padded(aad);
        polyval.update_padded(plaintext);
        let mut lengths = GenericArray::default();
        lengths[..8].copy_from_slice(&(aad.len() as u64 * 8).to_le_bytes());
        lengths[8..].copy_from_slice(&(plaintext.len() as u64 * 8).to_le_bytes());
        polyval.update(&[lengths]);
        let mut s = polyval.finalize();
        for (byte, n) in s.iter_mut().zip(&self.nonce) {
            *byte ^= n;
        }
        s[15] &= 0x7f;
        self.encryption.encrypt_block(&mut s);
        s.into()
    }

    /// The CTR keystream starts at the tag with its top bit set.
    fn apply_keystream(&self, tag: &[u8; TAG_LEN], buf: &mut [u8]) {
        let mut counter = GenericArray::clone_from_slice(tag);
        counter[15] |= 0x80;
        Ctr32LE::inner_iv_init(&self.encryption, &counter).apply_keystream_partial(buf.into());
    }

    /// Encrypts `buf` in place and returns the tag.
    pub fn seal_in_place(&self, aad: &[u8], buf: &mut [u8]) -> Result<[u8; TAG_LEN], AeadError> {
        within_limits(aad, buf)?;
        let tag = self.tag(aad, buf);
        self.apply_keystream(&tag, buf);
        Ok(tag)
    }

    /// Decrypts `buf` in place if `tag` authenticates it; on a mismatch the
    /// buffer is wiped.
    pub fn open_in_place(
        &self,
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AeadError> {
        within_limits(aad, buf)?;
        self.apply_keystream(tag, buf);
        let expected = self.tag(aad, buf);
        if bool::from(expected.ct_eq(tag)) {
            Ok(())
        } else {
            buf.iter_mut().for_each(|b| *b = 0);
            Err(AeadError)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes_gcm_siv::aead::{AeadInPlace, KeyInit};
    use proptest::prelude::*;

    /// The `aes-gcm-siv` crate's ciphertext and tag: the reference the
    /// hand-kept cipher must match byte for byte.
    fn crate_seal(key: &[u8; 32], nonce: &[u8; 12], aad: &[u8], msg: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let theirs = <aes_gcm_siv::Aes256GcmSiv as KeyInit>::new(key.into());
        let mut ct = msg.to_vec();
        let tag = theirs
            .encrypt_in_place_detached(nonce.into(), aad, &mut ct)
            .unwrap();
        (ct, tag.to_vec())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// For any key, nonce, AAD and message, the same ciphertext and tag
        /// as the `aes-gcm-siv` crate, and each opens the other's output.
        #[test]
        fn same_output_as_the_aes_gcm_siv_crate(
            key in any::<[u8; 32]>(),
            nonce in any::<[u8; 12]>(),
            aad in proptest::collection::vec(any::<u8>(), 0..80),
            msg in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let ours = Aes256GcmSiv::new(&key);
            let mut a = msg.clone();
            let tag_a = ours.seal_in_place(&nonce, &aad, &mut a).unwrap();
            let (b, tag_b) = crate_seal(&key, &nonce, &aad, &msg);
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(&tag_a[..], &tag_b[..]);
            let mut opened = a.clone();
            ours.open_in_place(&nonce, &aad, &mut opened, &tag_a).unwrap();
            prop_assert_eq!(&opened, &msg);
        }

        /// Messages sealed one after the other through one nonce's kept
        /// keys are exactly what the crate gives for that nonce, message by
        /// message: keeping the keys changes the cost, not the output.
        #[test]
        fn kept_message_keys_seal_as_the_crate_does(
            key in any::<[u8; 32]>(),
            nonce in any::<[u8; 12]>(),
            messages in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..40), proptest::collection::vec(any::<u8>(), 0..60)),
                1..5,
            ),
        ) {
            let ours = Aes256GcmSiv::new(&key);
            let kept = ours.message_keys(&nonce);
            for (aad, msg) in messages {
                let mut a = msg.clone();
                let tag_a = kept.seal_in_place(&aad, &mut a).unwrap();
                let (b, tag_b) = crate_seal(&key, &nonce, &aad, &msg);
                prop_assert_eq!(&a, &b);
                prop_assert_eq!(&tag_a[..], &tag_b[..]);
                kept.open_in_place(&aad, &mut a, &tag_a).unwrap();
                prop_assert_eq!(&a, &msg);
            }
        }

        /// Any change to nonce, AAD, ciphertext or tag is refused, and the
        /// buffer handed back holds no plaintext.
        #[test]
        fn any_flipped_bit_is_refused(
            key in any::<[u8; 32]>(),
            nonce in any::<[u8; 12]>(),
            aad in proptest::collection::vec(any::<u8>(), 0..40),
            msg in proptest::collection::vec(any::<u8>(), 1..64),
            which in 0usize..4,
            bit in any::<usize>(),
        ) {
            let c = Aes256GcmSiv::new(&key);
            let mut ct = msg.clone();
            let mut tag = c.seal_in_place(&nonce, &aad, &mut ct).unwrap();
            let (mut nonce, mut aad) = (nonce, aad);
            match which {
                0 => nonce[bit % 12] ^= 1 << (bit % 8),
                1 if !aad.is_empty() => { let n = aad.len(); aad[bit % n] ^= 1 << (bit % 8) }
                1 => aad.push(0),
                2 => { let n = ct.len(); ct[bit % n] ^= 1 << (bit % 8) }
                _ => tag[bit % 16] ^= 1 << (bit % 8),
            }
            prop_assert_eq!(c.open_in_place(&nonce, &aad, &mut ct, &tag), Err(AeadError));
            prop_assert!(ct.iter().all(|&b| b == 0));
        }
    }
}
