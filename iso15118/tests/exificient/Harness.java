// Line-oriented driver for EXIficient's EXICodec (from the PyPI iso15118
// wheel), for the differential tests in iso15118/tests/exificient.rs.
// Input lines:  E <json>   encode a message, print "OK <hex>" or "ERR <why>"
//               D <hex>    decode a document, print "OK <json>" or "ERR <why>"
// The schema is the first argument (a namespace EXICodec knows, e.g.
// urn:iso:15118:2:2010:AppProtocol).
import com.siemens.ct.exi.main.cmd.EXICodec;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;

public class Harness {
  public static void main(String[] args) throws Exception {
    EXICodec codec = new EXICodec();
    String schema = args[0];
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    String line;
    while ((line = in.readLine()) != null) {
      String out;
      try {
        if (line.startsWith("E ")) {
          byte[] b = codec.encode(line.substring(2), schema);
          if (b == null) {
            out = "ERR " + codec.get_last_encoding_error();
          } else {
            StringBuilder sb = new StringBuilder("OK ");
            for (byte x : b) sb.append(String.format("%02x", x));
            out = sb.toString();
          }
        } else if (line.startsWith("D ")) {
          String json = codec.decode(EXICodec.hexStringToByteArray(line.substring(2)), schema);
          out = json == null ? "ERR " + codec.get_last_decoding_error() : "OK " + json;
        } else {
          out = "ERR bad command";
        }
      } catch (Throwable t) {
        out = "ERR " + t;
      }
      System.out.println(out.replace('\n', ' '));
      System.out.flush();
    }
  }
}
