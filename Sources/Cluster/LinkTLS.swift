public import NIOSSL
import NIOCore

/// Mutual TLS for node links: every node presents its certificate and accepts only
/// peers whose certificate the cluster's CA signed. Peers are dialled by address, so the
/// TLS library checks no host name; instead, once a peer has said which node it is, its
/// certificate must name that node (`verifyNames`, see `LinkCertificateNames`). The
/// cluster secret is proved on top, bound to both certificates (`LinkHandshake`).
public struct LinkTLS: Sendable {
    let server: NIOSSLContext
    let client: NIOSSLContext
    /// This node's own certificate (DER): half of the handshake's channel binding.
    let certificateDER: [UInt8]
    /// Whether a peer's certificate must carry the name of the node it claims to be.
    let verifyNames: Bool

    /// - Parameter verifyNames: refuse a peer whose certificate does not name the node it
    ///   claims to be (`cluster.tls_verify_names`). Turn it off only for a CA that signs
    ///   node certificates without node names: then any certificate of the CA (with the
    ///   secret) can speak for any node.
    public init(certificatePath: String, keyPath: String, caPath: String, verifyNames: Bool = true) throws {
        let certificates = try NIOSSLCertificate.fromPEMFile(certificatePath)
        guard let leaf = certificates.first else { throw NIOSSLError.failedToLoadCertificate }
        let chain = certificates.map { NIOSSLCertificateSource.certificate($0) }
        let key = NIOSSLPrivateKeySource.privateKey(try NIOSSLPrivateKey(file: keyPath, format: .pem))
        let roots = NIOSSLTrustRoots.certificates(try NIOSSLCertificate.fromPEMFile(caPath))

        var serverConfiguration = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: key)
        serverConfiguration.minimumTLSVersion = .tlsv13
        serverConfiguration.certificateVerification = .noHostnameVerification
        serverConfiguration.trustRoots = roots
        server = try NIOSSLContext(configuration: serverConfiguration)

        var clientConfiguration = TLSConfiguration.makeClientConfiguration()
        clientConfiguration.minimumTLSVersion = .tlsv13
        clientConfiguration.certificateChain = chain
        clientConfiguration.privateKey = key
        clientConfiguration.certificateVerification = .noHostnameVerification
        clientConfiguration.trustRoots = roots
        client = try NIOSSLContext(configuration: clientConfiguration)
        certificateDER = try leaf.toDERBytes()
        self.verifyNames = verifyNames
    }
}

extension LinkTLS {
    /// Why a peer's certificate does not do for the handshake.
    struct PeerRefusal: Error {
        let reason: String
        let isNameMismatch: Bool
    }

    /// The handshake's channel binding for a peer claiming to be `node`, from its
    /// certificate on `context`'s connection: the certificate must be there and, with
    /// `verifyNames`, name that node.
    func binding(
        forPeer node: String,
        on context: ChannelHandlerContext,
        weAccepted: Bool
    ) -> Result<String, PeerRefusal> {
        guard let certificate = try? context.pipeline.syncOperations.nioSSL_peerCertificate(),
            let der = try? certificate.toDERBytes()
        else {
            return .failure(PeerRefusal(reason: "no peer certificate", isNameMismatch: false))
        }
        if verifyNames, !LinkCertificateNames(der: der).name(node) {
            return .failure(PeerRefusal(reason: "its certificate does not name node \(node)", isNameMismatch: true))
        }
        return .success(
            weAccepted
                ? LinkHandshake.binding(acceptorCertificate: certificateDER, connectorCertificate: der)
                : LinkHandshake.binding(acceptorCertificate: der, connectorCertificate: certificateDER)
        )
    }
}
