-- SM4 (GB/T 32907-2016) of one block in PL/pgSQL: a stand-in for a target's own SM4 function in
-- the self-tests (the harness checks a target's SM4 against its own, on random keys and blocks).
-- cp_sm4_encrypt(key_hex, plaintext_hex) returns the ciphertext as 32 hex digits.
CREATE OR REPLACE FUNCTION cp_sm4_tau(a bigint) RETURNS bigint LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  sbox bytea := '\xd690e9fecce13db716b614c228fb2c052b679a762abe04c3aa44132649860699'
                '9c4250f491ef987a33540b43edcfac62e4b31ca9c908e89580df94fa758f3fa6'
                '4707a7fcf37317ba83593c19e6854fa8686b81b27164da8bf8eb0f4b70569d35'
                '1e240e5e6358d1a225227c3b01217887d40046579fd327524c3602e7a0c4c89e'
                'eabf8ad240c738b5a3f7f2cef96115a1e0ae5da49b341a55ad933230f58cb1e3'
                '1df6e22e8266ca60c02923ab0d534e6fd5db3745defd8e2f03ff6a726d6c5b51'
                '8d1baf92bbddbc7f11d95c411f105ad80ac13188a5cd7bbd2d74d012b8e5b4b0'
                '8969974a0c96777e65b9f109c56ec68418f07dec3adc4d2079ee5f3ed7cb3948';
BEGIN
  RETURN (get_byte(sbox, ((a >> 24) & 255)::int)::bigint << 24)
       | (get_byte(sbox, ((a >> 16) & 255)::int)::bigint << 16)
       | (get_byte(sbox, ((a >> 8) & 255)::int)::bigint << 8)
       |  get_byte(sbox, (a & 255)::int)::bigint;
END $$;

CREATE OR REPLACE FUNCTION cp_sm4_rotl(x bigint, n int) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
  SELECT ((x << n) | (x >> (32 - n))) & 4294967295
$$;

CREATE OR REPLACE FUNCTION cp_sm4_encrypt(key_hex text, plaintext_hex text) RETURNS text LANGUAGE plpgsql IMMUTABLE SET search_path = public AS $$
DECLARE
  fk bigint[] := ARRAY[2746333894, 1453994832, 1736282519, 2993693404];  -- A3B1BAC6 56AA3350 677D9197 B27022DC
  k bigint[] := ARRAY[]::bigint[];
  x bigint[] := ARRAY[]::bigint[];
  rk bigint[] := ARRAY[]::bigint[];
  ck bigint;
  t bigint;
  i int;
BEGIN
  FOR i IN 0..3 LOOP
    k := k || (('x' || substr(key_hex, 8 * i + 1, 8))::bit(32)::bigint # fk[i + 1]);
    x := x || ('x' || substr(plaintext_hex, 8 * i + 1, 8))::bit(32)::bigint;
  END LOOP;
  FOR i IN 0..31 LOOP
    ck := ((((4 * i) * 7) % 256)::bigint << 24) | ((((4 * i + 1) * 7) % 256)::bigint << 16)
        | ((((4 * i + 2) * 7) % 256)::bigint << 8) | (((4 * i + 3) * 7) % 256)::bigint;
    t := cp_sm4_tau(k[i + 2] # k[i + 3] # k[i + 4] # ck);
    k := k || (k[i + 1] # t # cp_sm4_rotl(t, 13) # cp_sm4_rotl(t, 23));
    rk := rk || k[i + 5];
  END LOOP;
  FOR i IN 0..31 LOOP
    t := cp_sm4_tau(x[i + 2] # x[i + 3] # x[i + 4] # rk[i + 1]);
    x := x || (x[i + 1] # t # cp_sm4_rotl(t, 2) # cp_sm4_rotl(t, 10) # cp_sm4_rotl(t, 18) # cp_sm4_rotl(t, 24));
  END LOOP;
  RETURN lpad(to_hex(x[36]), 8, '0') || lpad(to_hex(x[35]), 8, '0') || lpad(to_hex(x[34]), 8, '0')
      || lpad(to_hex(x[33]), 8, '0');
END $$;
