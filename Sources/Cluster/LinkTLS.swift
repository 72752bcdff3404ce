public import NIOSSL

/// Mutual TLS for node links: every node presents its certificate and accepts only
/// peers whose certificate the cluster's CA signed. Peers are dialled by address, so
/// host names are not checked; the CA (and, on top, the cluster secret's HMAC) is what
/// admits a node.
public struct LinkTLS: Sendable {
    let server: NIOSSLContext
    let client: NIOSSLContext

    public init(certificatePath: String, keyPath: String, caPath: String) throws {
        let chain = try NIOSSLCertificate.fromPEMFile(certificatePath).map { NIOSSLCertificateSource.certificate($0) }
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
    }
}
